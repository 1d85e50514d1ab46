//! Invoice PDFs: built from the company's ledger (the log, not a read model), the company's
//! profile and the tenant's billing profile, rendered by `crate::pdf`.

use domain::company::Company;
use domain::ledger::{ledger_id, Invoice, Ledger};
use domain::tenant::Tenant;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::pdf::{invoice_pdf, InvoiceDocument, InvoiceLine, Party};
use crate::state::AppState;

/// Money as invoices print it: `1,250.00`.
pub fn money(value: Decimal) -> String {
    let mut v = value;
    v.rescale(2);
    let text = v.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!(
        "{}{grouped}.{frac}",
        if value.is_sign_negative() && !value.is_zero() {
            "-"
        } else {
            ""
        }
    )
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The invoice's document, or `None` when the ledger has no such invoice.
pub fn invoice_document(tenant: &Tenant, company: &Company, invoice: &Invoice) -> InvoiceDocument {
    let profile = &tenant.billing_profile;
    let currency = tenant
        .currency
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let mut tax_by_rate: std::collections::BTreeMap<String, Decimal> = Default::default();
    for line in &invoice.lines {
        if let Some(rate) = line.tax_rate {
            *tax_by_rate.entry(rate.normalize().to_string()).or_default() += line.tax;
        }
    }
    let (subtotal, _, total) = domain::billing::totals(&invoice.lines);
    let period = invoice.lines.iter().find_map(|l| match &l.source {
        Some(domain::billing::LineSource::Contract {
            period_start,
            period_end,
        }) => Some(format!("Service period {period_start} – {period_end}")),
        _ => None,
    });
    let mut notes = Vec::new();
    if !profile.payment_instructions.trim().is_empty() {
        notes.push(profile.payment_instructions.trim().to_owned());
    }
    if company.billing.as_ref().is_some_and(|b| b.tax_exempt) {
        notes.push("Tax exempt.".into());
    }
    if let Some(due) = invoice.due_date {
        notes.push(format!("Payment due by {due}."));
    }
    let mut buyer_address = lines(&company.profile.billing_address);
    if buyer_address.is_empty() {
        buyer_address = lines(&company.profile.site_address);
    }
    InvoiceDocument {
        seller: Party {
            name: tenant.name.clone(),
            address_lines: lines(&profile.address),
            extra_lines: [profile.tax_id.trim(), profile.contact.trim()]
                .into_iter()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        buyer: Party {
            name: company.name.clone(),
            address_lines: buyer_address,
            extra_lines: Vec::new(),
        },
        title: "Invoice".into(),
        number: invoice
            .number
            .map_or_else(|| "DRAFT".to_owned(), |n| n.to_string()),
        issue_date: invoice
            .issue_date
            .map(|d| d.to_string())
            .unwrap_or_default(),
        due_date: invoice.due_date.map(|d| d.to_string()).unwrap_or_default(),
        period,
        currency,
        lines: invoice
            .lines
            .iter()
            .map(|l| InvoiceLine {
                description: l.description.clone(),
                quantity: l.quantity.normalize().to_string(),
                unit_price: money(l.unit_price),
                tax_rate: l
                    .tax_rate
                    .map(|r| format!("{}%", r.normalize()))
                    .unwrap_or_default(),
                amount: money(l.net),
            })
            .collect(),
        subtotal: money(subtotal),
        tax_lines: tax_by_rate
            .into_iter()
            .map(|(rate, amount)| (format!("Tax {rate}%"), money(amount)))
            .collect(),
        total: money(total),
        paid: money(invoice.paid + invoice.credited),
        balance_due: money(invoice.balance()),
        notes,
        status_stamp: if invoice.void {
            Some("VOID".into())
        } else if invoice.number.is_some() && invoice.balance() <= Decimal::ZERO {
            Some("PAID".into())
        } else {
            None
        },
    }
}

/// The PDF of an invoice of the tenant's company: file name and bytes; `None` when there is
/// no such invoice.
pub async fn invoice_file(
    state: &AppState,
    tenant_id: Uuid,
    company_id: Uuid,
    invoice_id: Uuid,
) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let (ledger, _) = state
        .store
        .load::<Ledger>(tenant_id, &ledger_id(company_id))
        .await?;
    let Some(invoice) = ledger.invoices.get(&invoice_id) else {
        return Ok(None);
    };
    let (company, _) = state
        .store
        .load::<Company>(tenant_id, &company_id.to_string())
        .await?;
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?;
    let document = invoice_document(&tenant, &company, invoice);
    let name = match invoice.number {
        Some(n) => format!("Invoice {n}.pdf"),
        None => "Invoice draft.pdf".to_owned(),
    };
    Ok(Some((name, invoice_pdf(&document))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn money_groups_thousands_with_two_places() {
        let m = |s: &str| money(Decimal::from_str(s).unwrap());
        assert_eq!(m("1250"), "1,250.00");
        assert_eq!(m("0.5"), "0.50");
        assert_eq!(m("999"), "999.00");
        assert_eq!(m("1234567.89"), "1,234,567.89");
        assert_eq!(m("-1000"), "-1,000.00");
    }
}
