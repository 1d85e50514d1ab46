//! Integration and end-to-end tests, one binary (one link) for all of them.

mod activity;
mod api;
mod api_fuzz;
mod assets;
mod auth;
mod browser;
mod browser_assets;
mod browser_work_orders;
mod company_profile;
mod concurrency;
mod console;
mod contacts;
mod e2e;
mod event_store;
mod identity;
mod import;
mod openapi;
mod projections_it;
mod service_settings;
mod settings;
mod status_links;
mod team;
mod tokens;
mod work_order_pages;
mod work_orders;
mod work_orders_projection;
