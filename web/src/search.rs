//! The global search box of the console: one query over what the person may see (customer
//! companies; people of the team for those who may see it). Later issues add their records
//! (assets, contacts, work orders, invoices) here.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domain::authz::Action;
use projections::companies::{self, ListQuery, StatusFilter};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::{internal_page, Cookies};
use crate::AppState;

/// Results shown per kind of record.
const PER_KIND: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/search", get(search_page))
}

struct Hit {
    href: String,
    title: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "search.html")]
struct SearchPage {
    flash: Option<String>,
    q: String,
    companies: Vec<Hit>,
    people: Vec<Hit>,
    people_searched: bool,
}

#[derive(Debug, Deserialize, Default)]
struct Params {
    q: Option<String>,
}

async fn search_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let q: String = params
        .map(|Query(p)| p.q.unwrap_or_default())
        .unwrap_or_default()
        .trim()
        .chars()
        .take(200)
        .collect();
    let mut page = SearchPage {
        flash: cookies.flash.clone(),
        q: q.clone(),
        companies: Vec::new(),
        people: Vec::new(),
        people_searched: me.may(Action::ViewUsers),
    };
    if q.is_empty() {
        return page.into_response();
    }
    match companies::list(
        &state.pool,
        me.tenant_id,
        &ListQuery {
            search: Some(q.as_str()),
            status: StatusFilter::All,
            limit: PER_KIND,
            ..Default::default()
        },
    )
    .await
    {
        Ok(found) => {
            page.companies = found
                .rows
                .into_iter()
                .map(|row| Hit {
                    href: format!("/companies/{}", row.id),
                    detail: if row.archived {
                        "Company · archived".into()
                    } else {
                        format!("Company · {:.2} a month", row.monthly_rate)
                    },
                    title: row.name,
                })
                .collect()
        }
        Err(error) => return internal_page(error),
    }
    if page.people_searched {
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows: Result<Vec<(Uuid, String, String, String)>, _> = sqlx::query_as(
            "SELECT id, name, email, role FROM users
              WHERE tenant_id = $1 AND member AND (name ILIKE $2 OR email ILIKE $2)
              ORDER BY lower(name), id LIMIT $3",
        )
        .bind(me.tenant_id)
        .bind(&pattern)
        .bind(PER_KIND)
        .fetch_all(&state.pool)
        .await;
        match rows {
            Ok(rows) => {
                page.people = rows
                    .into_iter()
                    .map(|(id, name, email, role)| Hit {
                        href: format!("/team/{id}"),
                        title: if name.is_empty() { email.clone() } else { name },
                        detail: format!("Person · {role} · {email}"),
                    })
                    .collect()
            }
            Err(error) => return internal_page(error),
        }
    }
    page.into_response()
}
