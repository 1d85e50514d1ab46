//! The console's Activity page: the audit trail of the tenant (the `activity` projection),
//! filtered by person, entity and date range, newest first, 50 rows a page, paged by a keyset
//! cursor (`before`), never by OFFSET.
//!
//! Query parameters: `person` (the actor), `entity` (the kind of entity) and `id` (one entity
//! of that kind), `from` and `to` (`YYYY-MM-DD`, whole days in the organisation's time zone,
//! which the page states; times are shown in it too), `before` (the cursor of the "Older" link). A filter that
//! does not parse shows the page again with the message next to its field (422), never a 500.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use projections::activity::{self, ActivityFilter, ActivityRow, Cursor};
use projections::history::humanize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::Cookies;
use crate::AppState;
use domain::authz::Action;

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// Longest entity id accepted in the filter (ids are UUIDs or short keys).
const MAX_ID_LEN: usize = 200;
/// Most people listed in the "person" filter (any other can still be typed in the address).
const MAX_PEOPLE: i64 = 500;

/// The CSRF and flash cookies (`console::session_cookies`) are layered around every route by
/// `crate::router`, which hands this page `Extension<Cookies>`.
pub fn router() -> Router<AppState> {
    Router::new().route("/activity", get(activity_page))
}

/// The filter as typed, kept to fill the form again and to build the pager's links.
#[derive(Debug, Clone, Default)]
struct FilterForm {
    person: String,
    entity: String,
    id: String,
    from: String,
    to: String,
    before: String,
}

impl FilterForm {
    /// The first value of each known parameter; unknown ones are ignored.
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            person: get("person"),
            entity: get("entity"),
            id: get("id"),
            from: get("from"),
            to: get("to"),
            before: get("before"),
        }
    }

    fn is_filtered(&self) -> bool {
        !(self.person.is_empty()
            && self.entity.is_empty()
            && self.id.is_empty()
            && self.from.is_empty()
            && self.to.is_empty())
    }

    /// `/activity?...` with the filter and, when given, a cursor.
    fn href(&self, before: Option<&str>) -> String {
        let params = [
            ("person", self.person.as_str()),
            ("entity", self.entity.as_str()),
            ("id", self.id.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("before", before.unwrap_or_default()),
        ];
        let query: Vec<String> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", crate::console::percent_encode(v)))
            .collect();
        if query.is_empty() {
            "/activity".to_owned()
        } else {
            format!("/activity?{}", query.join("&"))
        }
    }
}

/// The messages of a filter that does not parse, by field.
#[derive(Debug, Default)]
struct FilterErrors {
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// About the page link itself (the cursor), shown above the table.
    page: Option<String>,
}

impl FilterErrors {
    fn any(&self) -> bool {
        self.id.is_some() || self.from.is_some() || self.to.is_some() || self.page.is_some()
    }
}

/// The filter's values once parsed.
#[derive(Debug, Default)]
struct Parsed {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    before: Option<Cursor>,
}

fn parse_date(raw: &str) -> Result<Option<NaiveDate>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|d| (1..=9999).contains(&d.year()) && raw.len() == 10)
        .map(Some)
        .ok_or_else(|| format!("“{raw}” is not a date: use YYYY-MM-DD, for example 2025-03-31."))
}

fn validate(form: &FilterForm) -> (Parsed, FilterErrors) {
    let mut errors = FilterErrors::default();
    let mut parsed = Parsed::default();
    match parse_date(&form.from) {
        Ok(date) => parsed.from = date,
        Err(message) => errors.from = Some(message),
    }
    match parse_date(&form.to) {
        Ok(date) => parsed.to = date,
        Err(message) => errors.to = Some(message),
    }
    if let (Some(from), Some(to)) = (parsed.from, parsed.to) {
        if from > to {
            errors.to = Some(format!(
                "The end date is before the start date ({from}): choose a day on or after it."
            ));
        }
    }
    if !form.id.is_empty() {
        if form.entity.is_empty() {
            errors.id = Some("Choose the kind of entity this id belongs to.".to_owned());
        } else if form.id.chars().count() > MAX_ID_LEN {
            errors.id = Some(format!("An id is at most {MAX_ID_LEN} characters long."));
        }
    }
    if !form.before.is_empty() {
        match Cursor::decode(&form.before) {
            Some(before) => parsed.before = Some(before),
            None => {
                errors.page = Some(
                    "This page link is not valid. Start again from the newest activity.".to_owned(),
                )
            }
        }
    }
    (parsed, errors)
}

/// The first instant of `date` in the organisation's time zone (a day that starts with a
/// daylight-saving gap starts at the first time that exists).
fn start_of(date: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=180)
        .step_by(15)
        .find_map(|minutes| {
            tz.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                .earliest()
        })
        .map(|local| local.with_timezone(&Utc))
        .unwrap_or_else(|| midnight.and_utc())
}

/// An option of a select, marked when it is the current value.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// One row prepared for display.
struct ActivityView {
    /// The event's place in the log.
    position: i64,
    at: String,
    when: String,
    actor: String,
    entity: String,
    /// The entity's own page, when it has one.
    entity_href: Option<String>,
    /// This entity's activity.
    entity_activity: String,
    summary: String,
}

impl ActivityView {
    fn new(
        row: ActivityRow,
        tz: chrono_tz::Tz,
        names: &std::collections::HashMap<String, String>,
    ) -> Self {
        let kind = humanize(&row.aggregate_type);
        let short_id: String = row.aggregate_id.chars().take(8).collect();
        let entity = match row.aggregate_type.as_str() {
            // People by name; the organisation by what it is.
            "user" if names.contains_key(&row.aggregate_id) => {
                format!(
                    "Person {}",
                    projections::users::actor_label(names, &row.aggregate_id)
                )
            }
            "tenant" => "Organisation".to_owned(),
            _ if short_id.len() < row.aggregate_id.len() => format!("{kind} {short_id}…"),
            _ => format!("{kind} {short_id}"),
        };
        let page = |prefix: &str| {
            Uuid::parse_str(&row.aggregate_id)
                .ok()
                .map(|id| format!("{prefix}/{id}"))
        };
        let entity_href = match row.aggregate_type.as_str() {
            "company" => page("/companies"),
            "user" => page("/team"),
            "contact" => page("/contacts"),
            "asset" => page("/assets"),
            "credential" => page("/credentials"),
            "work_order" => page("/work-orders"),
            "notification" => page("/notifications"),
            "tenant" => Some("/settings".to_owned()),
            _ => None,
        };
        let entity_activity = FilterForm {
            entity: row.aggregate_type.clone(),
            id: row.aggregate_id.clone(),
            ..Default::default()
        }
        .href(None);
        Self {
            position: row.global_position,
            at: row.recorded_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            when: row
                .recorded_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            actor: projections::users::actor_label(names, &row.actor),
            entity,
            entity_href,
            entity_activity,
            summary: row.summary,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "activity.html")]
struct ActivityPage {
    flash: Option<String>,
    /// The organisation's time zone, in which dates are read and times shown.
    time_zone: String,
    form: FilterForm,
    errors: FilterErrors,
    people: Vec<Choice>,
    entities: Vec<Choice>,
    rows: Vec<ActivityView>,
    /// The next (older) page, when there is one.
    older: Option<String>,
    /// The first page of the same filter, when this is not it.
    newest: Option<String>,
    filtered: bool,
}

fn choices(values: impl IntoIterator<Item = (String, String)>, current: &str) -> Vec<Choice> {
    let mut out: Vec<Choice> = values
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == current,
            value,
            label,
        })
        .collect();
    // A value that is not (or no longer) in the list stays selected rather than silently
    // turning into "all".
    if !current.is_empty() && !out.iter().any(|c| c.selected) {
        out.push(Choice {
            value: current.to_owned(),
            label: current.to_owned(),
            selected: true,
        });
    }
    out
}

async fn activity_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewActivity) {
        return refused.into_response();
    }
    let pairs = query.map(|Query(pairs)| pairs).unwrap_or_default();
    let form = FilterForm::from_pairs(&pairs);
    let (parsed, errors) = validate(&form);
    let tenant_id = me.tenant_id;
    let tz = match state
        .store
        .load::<domain::tenant::Tenant>(tenant_id, &tenant_id.to_string())
        .await
    {
        Ok((tenant, _)) => tenant.time_zone.map_or(chrono_tz::UTC, |t| t.tz()),
        Err(error) => return crate::console::internal_page(error),
    };
    let names = match projections::users::actor_names(&state.pool, tenant_id).await {
        Ok(names) => names,
        Err(error) => return crate::console::internal_page(error),
    };

    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(error) => return crate::console::internal_page(error),
    };
    let people = match activity::actors(&mut *conn, tenant_id, MAX_PEOPLE).await {
        Ok(people) => people,
        Err(error) => return crate::console::internal_page(error),
    };
    let entities = choices(
        commands::registry::AGGREGATES
            .iter()
            .map(|kind| (kind.name.to_owned(), humanize(kind.name))),
        &form.entity,
    );
    let mut page = ActivityPage {
        flash: cookies.flash.clone(),
        filtered: form.is_filtered(),
        people: choices(
            people.into_iter().map(|a| {
                let label = projections::users::actor_label(&names, &a);
                (a, label)
            }),
            &form.person,
        ),
        time_zone: tz.name().to_owned(),
        entities,
        form,
        errors,
        rows: Vec::new(),
        older: None,
        newest: None,
    };
    if page.errors.any() {
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    }

    let non_empty = |s: &str| (!s.is_empty()).then_some(s.to_owned());
    let (person, entity, id) = (
        non_empty(&page.form.person),
        non_empty(&page.form.entity),
        non_empty(&page.form.id),
    );
    let filter = ActivityFilter {
        actor: person.as_deref(),
        aggregate_type: entity.as_deref(),
        aggregate_id: id.as_deref(),
        from: parsed.from.map(|d| start_of(d, tz)),
        // `to` is a whole day: everything before the next midnight.
        until: parsed
            .to
            .and_then(|d| d.succ_opt())
            .map(|d| start_of(d, tz)),
        // One more than shown tells whether an older page exists.
        limit: PAGE_SIZE + 1,
        before: parsed.before,
    };
    let mut rows = match activity::page(&mut conn, tenant_id, &filter).await {
        Ok(rows) => rows,
        Err(error) => return crate::console::internal_page(error),
    };
    if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        page.older = rows
            .last()
            .map(|row| page.form.href(Some(&row.cursor().encode())));
    }
    if parsed.before.is_some() {
        page.newest = Some(page.form.href(None));
    }
    page.rows = rows
        .into_iter()
        .map(|row| ActivityView::new(row, tz, &names))
        .collect();
    (StatusCode::OK, page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_reported_by_field() {
        let form = |from: &str, to: &str, id: &str, entity: &str| FilterForm {
            from: from.into(),
            to: to.into(),
            id: id.into(),
            entity: entity.into(),
            ..Default::default()
        };
        let (_, errors) = validate(&form("2025-02-30", "", "", ""));
        assert!(errors.from.is_some() && errors.to.is_none());
        let (_, errors) = validate(&form("2025-03-02", "2025-03-01", "", ""));
        assert!(errors.from.is_none() && errors.to.is_some());
        let (parsed, errors) = validate(&form("2025-03-01", "2025-03-01", "", ""));
        assert!(!errors.any());
        assert_eq!(parsed.from, parsed.to);
        let (_, errors) = validate(&form("", "", "abc", ""));
        assert!(errors.id.is_some());
        let (_, errors) = validate(&form("+12345-01-01", "0000-01-01", "", ""));
        assert!(errors.from.is_some() && errors.to.is_some());
        let (_, errors) = validate(&FilterForm {
            before: "yesterday".into(),
            ..Default::default()
        });
        assert!(errors.page.is_some());
    }

    #[test]
    fn links_keep_the_filter() {
        let form = FilterForm {
            person: "webhook:stripe & co".into(),
            from: "2025-01-01".into(),
            ..Default::default()
        };
        assert_eq!(
            form.href(Some("1735689600000000.7")),
            "/activity?person=webhook%3Astripe%20%26%20co&from=2025-01-01&before=1735689600000000.7"
        );
        assert_eq!(FilterForm::default().href(None), "/activity");
    }
}
