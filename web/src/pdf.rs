//! PDF rendering of invoices and customer statements (issue 7, billing).
//!
//! The module is pure: input structs in, the bytes of a PDF out. No I/O, no
//! database, no clock. The same input always gives the same bytes (there is
//! no creation date and no random file id), so tests and caches can compare
//! documents byte for byte.
//!
//! Text uses the standard Type1 fonts Helvetica and Helvetica-Bold with
//! `WinAnsiEncoding`, so nothing is embedded and every viewer can extract the
//! text. Strings are encoded to Windows-1252 bytes; a character outside that
//! code page comes out as `?`. Text is measured with the published Adobe
//! (AFM) advance widths of both fonts, which makes right alignment exact and
//! lets long descriptions wrap within their column.
//!
//! Layout (A4 portrait, 50 pt side margins):
//! - first page: the seller (the MSP) top-left, its name bold and larger;
//!   the document title, number, dates and optional period top-right; an
//!   accent rule; the "Bill to" block for the customer, with the status
//!   stamp (PAID, VOID, ...) to its right when one is set;
//! - the lines table with a shaded header, a left-aligned description
//!   column and right-aligned number columns; rows that do not fit flow onto
//!   further pages, which repeat the table header under a small running
//!   header (seller name, document title and number);
//! - the totals block right-aligned under the amounts column, then the notes;
//! - a footer on every page with "Page N of M".

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

// ---------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------

/// A party on a document: the seller (the tenant) or the buyer (the customer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    pub address_lines: Vec<String>,
    /// Phone, email, VAT id and the like; printed muted under the address.
    pub extra_lines: Vec<String>,
}

/// One row of an invoice's lines table. All values are already formatted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceLine {
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    /// "20%"; "" when none. The tax column is left out when no line has one.
    pub tax_rate: String,
    pub amount: String,
}

/// An invoice or a credit note, every value already formatted for print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceDocument {
    /// The tenant (the MSP): its name and address brand the document.
    pub seller: Party,
    /// The customer company.
    pub buyer: Party,
    /// "Invoice", "Credit note".
    pub title: String,
    /// "2026-0042" or "42".
    pub number: String,
    /// Already formatted, e.g. YYYY-MM-DD.
    pub issue_date: String,
    pub due_date: String,
    /// "Service period 2026-11-01 – 2026-11-30".
    pub period: Option<String>,
    /// "EUR".
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    /// Left out when empty.
    pub subtotal: String,
    /// ("VAT 20%", "40.00").
    pub tax_lines: Vec<(String, String)>,
    pub total: String,
    /// Left out when empty.
    pub paid: String,
    /// Left out when empty.
    pub balance_due: String,
    /// Payment terms, bank details, "Tax exempt", ...; one paragraph each.
    pub notes: Vec<String>,
    /// "PAID", "VOID": shown as a stamp on the first page when set.
    pub status_stamp: Option<String>,
}

/// One row of a customer statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementRow {
    pub date: String,
    pub description: String,
    pub debit: String,
    pub credit: String,
    pub balance: String,
}

/// A customer statement (account activity and aging), values pre-formatted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementDocument {
    pub seller: Party,
    pub buyer: Party,
    pub as_of: String,
    pub currency: String,
    pub rows: Vec<StatementRow>,
    /// ("Current", "100.00"), ("1–30 days", ...).
    pub aging: Vec<(String, String)>,
    pub balance: String,
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Renders an invoice (or credit note) as an A4 PDF.
pub fn invoice_pdf(doc: &InvoiceDocument) -> Vec<u8> {
    let heading = join_nonempty(&[doc.title.as_str(), doc.number.as_str()], " ");
    let mut layout = Layout::new(&doc.seller.name, &heading);

    let number_label = if doc.title.trim().is_empty() {
        "Number".to_string()
    } else {
        format!("{} no.", doc.title.trim())
    };
    let meta = [
        (number_label, doc.number.clone()),
        ("Issue date".to_string(), doc.issue_date.clone()),
        ("Due date".to_string(), doc.due_date.clone()),
    ];
    letterhead(
        &mut layout,
        &doc.seller,
        &doc.title,
        &meta,
        doc.period.as_deref(),
    );
    parties(
        &mut layout,
        "BILL TO",
        &doc.buyer,
        doc.status_stamp.as_deref(),
    );

    // The lines table.
    let with_tax = doc.lines.iter().any(|l| !l.tax_rate.trim().is_empty());
    let amount_title = with_currency("Amount", &doc.currency);
    let mut numeric = vec![
        numeric_column("Qty", doc.lines.iter().map(|l| l.quantity.as_str())),
        numeric_column(
            "Unit price",
            doc.lines.iter().map(|l| l.unit_price.as_str()),
        ),
    ];
    if with_tax {
        numeric.push(numeric_column(
            "Tax",
            doc.lines.iter().map(|l| l.tax_rate.as_str()),
        ));
    }
    numeric.push(numeric_column(
        &amount_title,
        doc.lines.iter().map(|l| l.amount.as_str()),
    ));
    let mut table = Table::new(flex_first_column("Description", numeric));
    table.start(&mut layout);
    for line in &doc.lines {
        let mut cells = vec![
            line.description.as_str(),
            line.quantity.as_str(),
            line.unit_price.as_str(),
        ];
        if with_tax {
            cells.push(line.tax_rate.as_str());
        }
        cells.push(line.amount.as_str());
        table.row(&mut layout, &cells);
    }

    // Totals.
    let mut totals = Vec::new();
    if !doc.subtotal.trim().is_empty() {
        totals.push((
            "Subtotal".to_string(),
            doc.subtotal.clone(),
            TotalKind::Plain,
        ));
    }
    for (label, value) in &doc.tax_lines {
        totals.push((label.clone(), value.clone(), TotalKind::Plain));
    }
    totals.push((
        with_currency("Total", &doc.currency),
        doc.total.clone(),
        TotalKind::Total,
    ));
    if !doc.paid.trim().is_empty() {
        totals.push(("Paid".to_string(), doc.paid.clone(), TotalKind::Plain));
    }
    if !doc.balance_due.trim().is_empty() {
        totals.push((
            with_currency("Balance due", &doc.currency),
            doc.balance_due.clone(),
            TotalKind::Balance,
        ));
    }
    layout.y += 10.0;
    totals_block(&mut layout, &totals);

    notes_block(&mut layout, &doc.notes);

    let title = if heading.is_empty() {
        "Invoice".to_string()
    } else {
        heading.clone()
    };
    assemble(layout.finish(&heading), &title, &doc.seller.name)
}

/// Renders a customer statement (account activity and aging) as an A4 PDF.
pub fn statement_pdf(doc: &StatementDocument) -> Vec<u8> {
    const TITLE: &str = "Statement of account";
    let running = join_nonempty(&[TITLE, doc.buyer.name.as_str()], " – ");
    let mut layout = Layout::new(&doc.seller.name, &running);

    let meta = [
        ("Date".to_string(), doc.as_of.clone()),
        ("Currency".to_string(), doc.currency.clone()),
        ("Balance due".to_string(), doc.balance.clone()),
    ];
    letterhead(&mut layout, &doc.seller, TITLE, &meta, None);
    parties(&mut layout, "STATEMENT FOR", &doc.buyer, None);

    // The activity table.
    let date_width = (doc
        .rows
        .iter()
        .map(|r| text_width(&r.date, Font::Regular, BODY_SIZE))
        .fold(text_width("Date", Font::Bold, HEAD_SIZE), f32::max)
        + 2.0 * CELL_PAD_X)
        .clamp(60.0, 110.0);
    let numeric = vec![
        numeric_column("Debit", doc.rows.iter().map(|r| r.debit.as_str())),
        numeric_column("Credit", doc.rows.iter().map(|r| r.credit.as_str())),
        numeric_column(
            &with_currency("Balance", &doc.currency),
            doc.rows.iter().map(|r| r.balance.as_str()),
        ),
    ];
    let mut columns = vec![Column {
        title: "Date".to_string(),
        width: date_width,
        align: Align::Left,
    }];
    let mut rest = flex_first_column("Description", numeric);
    rest[0].width -= date_width;
    columns.extend(rest);
    let mut table = Table::new(columns);
    table.start(&mut layout);
    for row in &doc.rows {
        table.row(
            &mut layout,
            &[
                row.date.as_str(),
                row.description.as_str(),
                row.debit.as_str(),
                row.credit.as_str(),
                row.balance.as_str(),
            ],
        );
    }

    // Aging summary: one column per bucket.
    if !doc.aging.is_empty() {
        layout.y += 18.0;
        let label_h = 14.0;
        let n = doc.aging.len() as f32;
        let columns = doc
            .aging
            .iter()
            .map(|(label, _)| Column {
                title: label.clone(),
                width: CONTENT_W / n,
                align: Align::Right,
            })
            .collect::<Vec<_>>();
        let mut aging = Table::new(columns);
        let need = label_h + aging.header_height() + aging.min_row_height();
        if !layout.fits(need) {
            layout.new_page();
        }
        let y = layout.y;
        text(layout.content(), LEFT, y, label_h, &LABEL, "AGING");
        layout.y += label_h;
        aging.start(&mut layout);
        let values = doc
            .aging
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>();
        aging.row(&mut layout, &values);
    }

    layout.y += 10.0;
    totals_block(
        &mut layout,
        &[(
            with_currency("Balance due", &doc.currency),
            doc.balance.clone(),
            TotalKind::Balance,
        )],
    );

    let footer = join_nonempty(&[TITLE, doc.as_of.as_str()], " ");
    let title = join_nonempty(&[TITLE, doc.buyer.name.as_str(), doc.as_of.as_str()], " ");
    assemble(layout.finish(&footer), &title, &doc.seller.name)
}

// ---------------------------------------------------------------------------
// Fonts, encoding and metrics
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }

    /// Advance widths in 1/1000 em for the WinAnsi codes 32..=255.
    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &HELVETICA_WIDTHS,
            Font::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }
}

/// The Windows-1252 (WinAnsiEncoding) byte for a character; `?` for a
/// character the code page lacks. Tabs, line breaks and the typographic
/// spaces (thin, narrow no-break, ...) become a plain space.
fn winansi_byte(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        '\t' | '\n' | '\r' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => b' ',
        _ => b'?',
    }
}

/// Encodes text to WinAnsi bytes, one byte per character.
fn encode(text: &str) -> Vec<u8> {
    text.chars().map(winansi_byte).collect()
}

/// Advance width of a WinAnsi byte in 1/1000 em.
fn byte_units(byte: u8, font: Font) -> u32 {
    if byte < 32 {
        // Never produced by `encode`; measured as the `?` it would be.
        return u32::from(font.widths()[usize::from(b'?' - 32)]);
    }
    u32::from(font.widths()[usize::from(byte - 32)])
}

/// Width of `text` in 1/1000 em, exactly as a viewer advances it.
fn text_units(text: &str, font: Font) -> u32 {
    text.chars()
        .map(|c| byte_units(winansi_byte(c), font))
        .sum()
}

/// Width of `text` in points at `size`.
fn text_width(text: &str, font: Font, size: f32) -> f32 {
    text_units(text, font) as f32 * size / 1000.0
}

/// Breaks `text` into lines no wider than `max_width`: at spaces where
/// possible, inside a word when the word alone is too wide. Line breaks in
/// the text are kept; runs of spaces collapse. Always at least one line.
fn wrap(text: &str, font: Font, size: f32, max_width: f32) -> Vec<String> {
    let max_width = max_width.max(1.0) + 0.001;
    let space = text_width(" ", font, size);
    let mut lines = Vec::new();
    for paragraph in text.trim().split('\n') {
        let mut line = String::new();
        let mut line_width = 0.0;
        for word in paragraph.split_whitespace() {
            let word_width = text_width(word, font, size);
            if !line.is_empty() && line_width + space + word_width <= max_width {
                line.push(' ');
                line.push_str(word);
                line_width += space + word_width;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if word_width <= max_width {
                line.push_str(word);
                line_width = word_width;
                continue;
            }
            // A word wider than the column: break it between characters.
            line_width = 0.0;
            for c in word.chars() {
                let w = byte_units(winansi_byte(c), font) as f32 * size / 1000.0;
                if !line.is_empty() && line_width + w > max_width {
                    lines.push(std::mem::take(&mut line));
                    line_width = 0.0;
                }
                line.push(c);
                line_width += w;
            }
        }
        lines.push(line);
    }
    lines
}

/// `text`, shortened with an ellipsis when it is wider than `max_width`.
fn truncate(text: &str, font: Font, size: f32, max_width: f32) -> String {
    if text_width(text, font, size) <= max_width {
        return text.to_string();
    }
    let ellipsis = text_width("…", font, size);
    let mut out = String::new();
    let mut width = 0.0;
    for c in text.chars() {
        let w = byte_units(winansi_byte(c), font) as f32 * size / 1000.0;
        if width + w + ellipsis > max_width {
            break;
        }
        out.push(c);
        width += w;
    }
    format!("{}…", out.trim_end())
}

fn join_nonempty(parts: &[&str], sep: &str) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(sep)
}

fn with_currency(label: &str, currency: &str) -> String {
    if currency.trim().is_empty() {
        label.to_string()
    } else {
        format!("{label} ({})", currency.trim())
    }
}

// ---------------------------------------------------------------------------
// Geometry and styles. Layout code works top-down: `y` is the distance
// from the top edge of the page; drawing converts to PDF coordinates.
// ---------------------------------------------------------------------------

/// A4 in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = PAGE_W - 50.0;
const CONTENT_W: f32 = RIGHT - LEFT;
const TOP: f32 = 48.0;
/// Body content stays above this line; the footer lives below it.
const BODY_BOTTOM: f32 = PAGE_H - 68.0;
const FOOTER_RULE: f32 = PAGE_H - 50.0;
const FOOTER_LINE: f32 = PAGE_H - 48.0;

/// Width of the seller and buyer blocks on the left.
const LEFT_BLOCK_W: f32 = 280.0;
/// Width of the title and meta block on the right.
const RIGHT_BLOCK_W: f32 = 215.0;

const BODY_SIZE: f32 = 9.0;
const BODY_LEADING: f32 = 11.5;
const HEAD_SIZE: f32 = 8.0;
const HEAD_LEADING: f32 = 10.0;
const CELL_PAD_X: f32 = 6.0;
const CELL_PAD_Y: f32 = 4.0;

type Rgb = (f32, f32, f32);
const INK: Rgb = (0.11, 0.12, 0.14);
const MUTED: Rgb = (0.40, 0.43, 0.47);
const ACCENT: Rgb = (0.09, 0.27, 0.47);
const RULE: Rgb = (0.82, 0.84, 0.87);
const SHADE: Rgb = (0.925, 0.937, 0.953);
const STAMP_GOOD: Rgb = (0.09, 0.50, 0.25);
const STAMP_BAD: Rgb = (0.75, 0.12, 0.12);

/// A font, a size, a colour and the height one line takes.
struct Style {
    font: Font,
    size: f32,
    color: Rgb,
    /// Height of one line in a paragraph.
    leading: f32,
}

const SELLER_NAME: Style = Style {
    font: Font::Bold,
    size: 16.0,
    color: INK,
    leading: 19.0,
};
const TITLE: Style = Style {
    font: Font::Bold,
    size: 20.0,
    color: ACCENT,
    leading: 24.0,
};
const BODY: Style = Style {
    font: Font::Regular,
    size: BODY_SIZE,
    color: INK,
    leading: 12.0,
};
const BODY_MUTED: Style = Style {
    font: Font::Regular,
    size: BODY_SIZE,
    color: MUTED,
    leading: 12.0,
};
const BODY_BOLD: Style = Style {
    font: Font::Bold,
    size: BODY_SIZE,
    color: INK,
    leading: 13.0,
};
const SMALL_MUTED: Style = Style {
    font: Font::Regular,
    size: 8.0,
    color: MUTED,
    leading: 12.0,
};
const LABEL: Style = Style {
    font: Font::Bold,
    size: 7.5,
    color: MUTED,
    leading: 12.0,
};
const BUYER_NAME: Style = Style {
    font: Font::Bold,
    size: 11.0,
    color: INK,
    leading: 14.0,
};
const HEADER_CELL: Style = Style {
    font: Font::Bold,
    size: HEAD_SIZE,
    color: INK,
    leading: HEAD_LEADING,
};

/// The baseline of a line of `style` text that occupies `leading` points
/// from `top`: capitals are centred vertically in the line.
fn baseline(top: f32, leading: f32, size: f32) -> f32 {
    top + leading / 2.0 + 0.36 * size
}

/// Draws one line of text with its left edge at `x`, centred in the line
/// box `top..top + leading`.
fn text(c: &mut Content, x: f32, top: f32, leading: f32, style: &Style, s: &str) {
    let bytes = encode(s);
    if bytes.iter().all(|b| *b == b' ') {
        return;
    }
    c.set_fill_rgb(style.color.0, style.color.1, style.color.2);
    c.begin_text();
    c.set_font(style.font.resource(), style.size);
    c.next_line(x, PAGE_H - baseline(top, leading, style.size));
    c.show(Str(&bytes));
    c.end_text();
}

/// Like [`text`], but with the right edge of the text exactly at `right`.
fn text_right(c: &mut Content, right: f32, top: f32, leading: f32, style: &Style, s: &str) {
    let x = right - text_width(s, style.font, style.size);
    text(c, x, top, leading, style, s);
}

/// Draws `s` wrapped to `width`, left- or right-aligned, from `top`;
/// returns the y below the last line.
fn paragraph(
    c: &mut Content,
    x: f32,
    top: f32,
    width: f32,
    align: Align,
    style: &Style,
    s: &str,
) -> f32 {
    let leading = style.leading;
    let mut y = top;
    for line in wrap(s, style.font, style.size, width) {
        match align {
            Align::Left => text(c, x, y, leading, style, &line),
            Align::Right => text_right(c, x + width, y, leading, style, &line),
        }
        y += leading;
    }
    y
}

fn fill_rect(c: &mut Content, x: f32, top: f32, w: f32, h: f32, color: Rgb) {
    c.set_fill_rgb(color.0, color.1, color.2);
    c.rect(x, PAGE_H - top - h, w, h);
    c.fill_nonzero();
}

fn hline(c: &mut Content, x1: f32, x2: f32, y: f32, width: f32, color: Rgb) {
    c.set_stroke_rgb(color.0, color.1, color.2);
    c.set_line_width(width);
    c.move_to(x1, PAGE_H - y);
    c.line_to(x2, PAGE_H - y);
    c.stroke();
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

/// The pages drawn so far and the cursor on the last one.
struct Layout {
    pages: Vec<Content>,
    /// Top-down cursor on the current page.
    y: f32,
    running_left: String,
    running_right: String,
}

impl Layout {
    fn new(running_left: &str, running_right: &str) -> Self {
        Layout {
            pages: vec![Content::new()],
            y: TOP,
            running_left: running_left.trim().to_string(),
            running_right: running_right.trim().to_string(),
        }
    }

    fn content(&mut self) -> &mut Content {
        self.pages.last_mut().expect("a layout always has a page")
    }

    fn fits(&self, height: f32) -> bool {
        self.y + height <= BODY_BOTTOM + 0.01
    }

    /// Starts a continuation page with the running header.
    fn new_page(&mut self) {
        self.pages.push(Content::new());
        let half = CONTENT_W / 2.0 - 10.0;
        let left = truncate(&self.running_left, Font::Bold, 10.0, half);
        let right = truncate(&self.running_right, Font::Regular, BODY_SIZE, half);
        let c = self.content();
        let name = Style {
            font: Font::Bold,
            size: 10.0,
            color: INK,
            leading: 14.0,
        };
        text(c, LEFT, TOP, 14.0, &name, &left);
        text_right(c, RIGHT, TOP, 14.0, &BODY_MUTED, &right);
        hline(c, LEFT, RIGHT, TOP + 19.0, 0.75, ACCENT);
        self.y = TOP + 32.0;
    }

    /// Adds the footer with "Page N of M" to every page and hands them over.
    fn finish(mut self, footer_left: &str) -> Vec<Content> {
        let total = self.pages.len();
        let left = truncate(footer_left.trim(), Font::Regular, 8.0, CONTENT_W - 110.0);
        for (i, c) in self.pages.iter_mut().enumerate() {
            hline(c, LEFT, RIGHT, FOOTER_RULE, 0.5, RULE);
            text(c, LEFT, FOOTER_LINE, 12.0, &SMALL_MUTED, &left);
            let page = format!("Page {} of {}", i + 1, total);
            text_right(c, RIGHT, FOOTER_LINE, 12.0, &SMALL_MUTED, &page);
        }
        self.pages
    }
}

/// Seller block top-left, title and meta rows top-right, an accent rule.
fn letterhead(
    layout: &mut Layout,
    seller: &Party,
    title: &str,
    meta: &[(String, String)],
    sub: Option<&str>,
) {
    let top = layout.y;
    let c = layout.content();

    // Left: the seller.
    let mut y = paragraph(
        c,
        LEFT,
        top,
        LEFT_BLOCK_W,
        Align::Left,
        &SELLER_NAME,
        &seller.name,
    );
    y += 3.0;
    for line in &seller.address_lines {
        y = paragraph(c, LEFT, y, LEFT_BLOCK_W, Align::Left, &BODY, line);
    }
    for line in &seller.extra_lines {
        y = paragraph(c, LEFT, y, LEFT_BLOCK_W, Align::Left, &BODY_MUTED, line);
    }
    let left_bottom = y;

    // Right: title, meta rows, period.
    let x = RIGHT - RIGHT_BLOCK_W;
    let mut y = paragraph(c, x, top - 2.0, RIGHT_BLOCK_W, Align::Right, &TITLE, title);
    y += 6.0;
    let label_w = meta
        .iter()
        .map(|(l, _)| text_width(l, Font::Regular, BODY_SIZE))
        .fold(0.0, f32::max)
        .min(RIGHT_BLOCK_W / 2.0);
    for (label, value) in meta {
        let label_line = truncate(label, Font::Regular, BODY_SIZE, label_w);
        text(c, x, y, 13.0, &BODY_MUTED, &label_line);
        let value_w = RIGHT_BLOCK_W - label_w - 10.0;
        y = paragraph(
            c,
            RIGHT - value_w,
            y,
            value_w,
            Align::Right,
            &BODY_BOLD,
            value,
        );
    }
    if let Some(sub) = sub.filter(|s| !s.trim().is_empty()) {
        y += 3.0;
        y = paragraph(c, x, y, RIGHT_BLOCK_W, Align::Right, &BODY_MUTED, sub);
    }
    let right_bottom = y;

    let y = left_bottom.max(right_bottom) + 12.0;
    hline(c, LEFT, RIGHT, y, 1.0, ACCENT);
    layout.y = y + 16.0;
}

/// The buyer block ("BILL TO"), with the status stamp to its right.
fn parties(layout: &mut Layout, label: &str, buyer: &Party, stamp: Option<&str>) {
    let top = layout.y;
    let c = layout.content();
    text(c, LEFT, top, 12.0, &LABEL, label);
    let mut y = paragraph(
        c,
        LEFT,
        top + 13.0,
        LEFT_BLOCK_W,
        Align::Left,
        &BUYER_NAME,
        &buyer.name,
    );
    y += 1.0;
    for line in &buyer.address_lines {
        y = paragraph(c, LEFT, y, LEFT_BLOCK_W, Align::Left, &BODY, line);
    }
    for line in &buyer.extra_lines {
        y = paragraph(c, LEFT, y, LEFT_BLOCK_W, Align::Left, &BODY_MUTED, line);
    }
    if let Some(stamp) = stamp.map(str::trim).filter(|s| !s.is_empty()) {
        let height = 64.0;
        let cy = top + (y - top).max(height) / 2.0;
        status_stamp(c, RIGHT - RIGHT_BLOCK_W / 2.0, cy, stamp);
        y = y.max(top + height);
    }
    layout.y = y + 22.0;
}

/// A rubber-stamp style box, slightly rotated, centred at (`cx`, `cy`).
fn status_stamp(c: &mut Content, cx: f32, cy: f32, stamp: &str) {
    let upper = stamp.to_uppercase();
    let color = if upper == "PAID" {
        STAMP_GOOD
    } else {
        STAMP_BAD
    };
    let units = text_units(&upper, Font::Bold).max(1) as f32;
    let size = (170.0 * 1000.0 / units).min(24.0);
    let text_w = units * size / 1000.0;
    let (w, h) = (text_w + 26.0, size + 16.0);
    let (sin, cos) = 8.0_f32.to_radians().sin_cos();
    let bytes = encode(&upper);

    c.save_state();
    c.transform([cos, sin, -sin, cos, cx, PAGE_H - cy]);
    c.set_stroke_rgb(color.0, color.1, color.2);
    c.set_line_width(2.0);
    c.rect(-w / 2.0, -h / 2.0, w, h);
    c.stroke();
    c.set_line_width(0.6);
    c.rect(-w / 2.0 + 3.0, -h / 2.0 + 3.0, w - 6.0, h - 6.0);
    c.stroke();
    c.set_fill_rgb(color.0, color.1, color.2);
    c.begin_text();
    c.set_font(Font::Bold.resource(), size);
    c.next_line(-text_w / 2.0, -0.36 * size);
    c.show(Str(&bytes));
    c.end_text();
    c.restore_state();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TotalKind {
    Plain,
    Total,
    Balance,
}

/// The totals, right-aligned: values line up with the amount column.
fn totals_block(layout: &mut Layout, rows: &[(String, String, TotalKind)]) {
    let style_of = |kind: TotalKind| match kind {
        TotalKind::Plain => (
            Style {
                font: Font::Regular,
                size: 9.0,
                color: MUTED,
                leading: 16.0,
            },
            Style {
                font: Font::Regular,
                size: 9.0,
                color: INK,
                leading: 16.0,
            },
            16.0,
        ),
        TotalKind::Total => (
            Style {
                font: Font::Bold,
                size: 10.5,
                color: INK,
                leading: 21.0,
            },
            Style {
                font: Font::Bold,
                size: 10.5,
                color: INK,
                leading: 21.0,
            },
            21.0,
        ),
        TotalKind::Balance => (
            Style {
                font: Font::Bold,
                size: 10.5,
                color: ACCENT,
                leading: 23.0,
            },
            Style {
                font: Font::Bold,
                size: 10.5,
                color: ACCENT,
                leading: 23.0,
            },
            23.0,
        ),
    };
    let mut width: f32 = 240.0;
    let mut height = 0.0;
    for (label, value, kind) in rows {
        let (ls, vs, h) = style_of(*kind);
        let need = text_width(label, ls.font, ls.size)
            + text_width(value, vs.font, vs.size)
            + 4.0 * CELL_PAD_X;
        width = width.max(need);
        height += h + if *kind == TotalKind::Balance {
            3.0
        } else {
            0.0
        };
    }
    let width = width.min(CONTENT_W);
    if !layout.fits(height) {
        layout.new_page();
    }
    let x = RIGHT - width;
    let mut y = layout.y;
    let c = layout.content();
    for (label, value, kind) in rows {
        let (ls, vs, h) = style_of(*kind);
        match kind {
            TotalKind::Plain => {}
            TotalKind::Total => hline(c, x, RIGHT, y + 1.0, 0.9, INK),
            TotalKind::Balance => {
                y += 3.0;
                fill_rect(c, x, y, width, h, SHADE);
            }
        }
        let value_w = text_width(value, vs.font, vs.size);
        let label_max = width - value_w - 3.0 * CELL_PAD_X;
        let label = truncate(label, ls.font, ls.size, label_max);
        text(c, x + CELL_PAD_X, y, h, &ls, &label);
        text_right(c, RIGHT - CELL_PAD_X, y, h, &vs, value);
        y += h;
    }
    layout.y = y;
}

/// The notes, one paragraph each, flowing onto further pages as needed.
fn notes_block(layout: &mut Layout, notes: &[String]) {
    let notes: Vec<&String> = notes.iter().filter(|n| !n.trim().is_empty()).collect();
    if notes.is_empty() {
        return;
    }
    layout.y += 22.0;
    let leading = 12.5;
    if !layout.fits(14.0 + leading) {
        layout.new_page();
    }
    let y = layout.y;
    let c = layout.content();
    text(c, LEFT, y, 12.0, &LABEL, "NOTES");
    hline(c, LEFT, RIGHT, y + 13.0, 0.5, RULE);
    layout.y += 17.0;
    for (i, note) in notes.iter().enumerate() {
        if i > 0 {
            layout.y += 4.0;
        }
        for line in wrap(note, BODY.font, BODY.size, CONTENT_W) {
            if !layout.fits(leading) {
                layout.new_page();
            }
            let y = layout.y;
            text(layout.content(), LEFT, y, leading, &BODY, &line);
            layout.y += leading;
        }
    }
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct Column {
    title: String,
    width: f32,
    align: Align,
}

/// A right-aligned column just wide enough for its title and values.
fn numeric_column<'a>(title: &str, values: impl Iterator<Item = &'a str>) -> Column {
    let widest = values
        .map(|v| text_width(v.trim(), Font::Regular, BODY_SIZE))
        .fold(text_width(title, Font::Bold, HEAD_SIZE), f32::max);
    Column {
        title: title.to_string(),
        width: (widest + 2.0 * CELL_PAD_X).clamp(48.0, 130.0),
        align: Align::Right,
    }
}

/// A left-aligned first column taking whatever `others` leave of the
/// content width (at least 180 pt; the others shrink to make room).
fn flex_first_column(title: &str, mut others: Vec<Column>) -> Vec<Column> {
    const MIN_FLEX: f32 = 180.0;
    let used: f32 = others.iter().map(|c| c.width).sum();
    if used > CONTENT_W - MIN_FLEX {
        let scale = (CONTENT_W - MIN_FLEX) / used;
        for c in &mut others {
            c.width *= scale;
        }
    }
    let used: f32 = others.iter().map(|c| c.width).sum();
    let mut columns = vec![Column {
        title: title.to_string(),
        width: CONTENT_W - used,
        align: Align::Left,
    }];
    columns.extend(others);
    columns
}

/// A table that flows over pages, repeating its header on each.
struct Table {
    columns: Vec<Column>,
    rows_on_page: usize,
}

impl Table {
    fn new(columns: Vec<Column>) -> Self {
        Table {
            columns,
            rows_on_page: 0,
        }
    }

    fn header_lines(&self) -> Vec<Vec<String>> {
        self.columns
            .iter()
            .map(|c| wrap(&c.title, Font::Bold, HEAD_SIZE, c.width - 2.0 * CELL_PAD_X))
            .collect()
    }

    fn header_height(&self) -> f32 {
        let lines = self.header_lines().iter().map(Vec::len).max().unwrap_or(1);
        lines as f32 * HEAD_LEADING + 2.0 * CELL_PAD_Y + 2.0
    }

    fn min_row_height(&self) -> f32 {
        BODY_LEADING + 2.0 * CELL_PAD_Y
    }

    /// Draws the header, first moving to a new page unless the header and
    /// one row fit on this one.
    fn start(&mut self, layout: &mut Layout) {
        if !layout.fits(self.header_height() + self.min_row_height()) {
            layout.new_page();
        }
        self.draw_header(layout);
    }

    fn draw_header(&mut self, layout: &mut Layout) {
        let h = self.header_height();
        let top = layout.y;
        let lines = self.header_lines();
        let c = layout.content();
        fill_rect(c, LEFT, top, CONTENT_W, h, SHADE);
        let mut x = LEFT;
        for (column, lines) in self.columns.iter().zip(&lines) {
            for (i, line) in lines.iter().enumerate() {
                let y = top + CELL_PAD_Y + 1.0 + i as f32 * HEAD_LEADING;
                match column.align {
                    Align::Left => text(c, x + CELL_PAD_X, y, HEAD_LEADING, &HEADER_CELL, line),
                    Align::Right => text_right(
                        c,
                        x + column.width - CELL_PAD_X,
                        y,
                        HEAD_LEADING,
                        &HEADER_CELL,
                        line,
                    ),
                }
            }
            x += column.width;
        }
        hline(c, LEFT, RIGHT, top + h, 0.9, ACCENT);
        layout.y = top + h;
        self.rows_on_page = 0;
    }

    /// Draws one row; moves it to a new page (with the header repeated)
    /// when it does not fit, and splits it only if it is taller than a page.
    fn row(&mut self, layout: &mut Layout, cells: &[&str]) {
        let wrapped: Vec<Vec<String>> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cell = cells.get(i).copied().unwrap_or("");
                wrap(cell, Font::Regular, BODY_SIZE, c.width - 2.0 * CELL_PAD_X)
            })
            .collect();
        let total = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut start = 0;
        while start < total {
            let room = ((BODY_BOTTOM - layout.y - 2.0 * CELL_PAD_Y) / BODY_LEADING + 0.001).floor();
            let room = if room < 0.0 { 0 } else { room as usize };
            if room >= total - start {
                self.draw_lines(layout, &wrapped, start, total);
                break;
            }
            if self.rows_on_page == 0 && room >= 1 {
                // Taller than a whole page: fill this one and go on.
                self.draw_lines(layout, &wrapped, start, start + room);
                start += room;
            }
            layout.new_page();
            self.draw_header(layout);
        }
    }

    fn draw_lines(&mut self, layout: &mut Layout, wrapped: &[Vec<String>], from: usize, to: usize) {
        let top = layout.y;
        let h = (to - from) as f32 * BODY_LEADING + 2.0 * CELL_PAD_Y;
        let c = layout.content();
        let mut x = LEFT;
        for (column, lines) in self.columns.iter().zip(wrapped) {
            for (i, line) in lines.iter().enumerate().take(to).skip(from) {
                let y = top + CELL_PAD_Y + (i - from) as f32 * BODY_LEADING;
                match column.align {
                    Align::Left => text(c, x + CELL_PAD_X, y, BODY_LEADING, &BODY, line),
                    Align::Right => text_right(
                        c,
                        x + column.width - CELL_PAD_X,
                        y,
                        BODY_LEADING,
                        &BODY,
                        line,
                    ),
                }
            }
            x += column.width;
        }
        hline(c, LEFT, RIGHT, top + h, 0.5, RULE);
        layout.y = top + h;
        self.rows_on_page += 1;
    }
}

// ---------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------

/// Writes the pages into a PDF with the two standard fonts and the document
/// information (no dates, so the bytes depend on the input alone).
fn assemble(pages: Vec<Content>, title: &str, author: &str) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let regular_id = Ref::new(3);
    let bold_id = Ref::new(4);
    let info_id = Ref::new(5);
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(6 + 2 * i as i32))
        .collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(regular_id)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold_id)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info_id)
        .title(TextStr(title.trim()))
        .author(TextStr(author.trim()))
        .creator(TextStr("SupportTracker"))
        .producer(TextStr("SupportTracker"));

    for (content, page_id) in pages.into_iter().zip(&page_ids) {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree_id)
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(Font::Regular.resource(), regular_id)
            .pair(Font::Bold.resource(), bold_id);
        page.finish();
        let data = content.finish();
        pdf.stream(content_id, &data);
    }
    pdf.finish()
}

// Published Adobe AFM advance widths of the standard fonts, indexed by
// WinAnsiEncoding code - 32. The codes WinAnsi leaves undefined (0x7F, 0x81,
// 0x8D, 0x8F, 0x90, 0x9D) take the bullet's width, as viewers draw a bullet.
#[rustfmt::skip]
/// Helvetica advance widths (1/1000 em) for WinAnsiEncoding codes 32..=255.
const HELVETICA_WIDTHS: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,  // 0x20
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,  // 0x30
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,  // 0x40
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,  // 0x50
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,  // 0x60
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 350,  // 0x70
    556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,  // 0x80
    350, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667,  // 0x90
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,  // 0xa0
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,  // 0xb0
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,  // 0xc0
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,  // 0xd0
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,  // 0xe0
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,  // 0xf0
];

#[rustfmt::skip]
/// Helvetica-Bold advance widths (1/1000 em) for WinAnsiEncoding codes 32..=255.
const HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,  // 0x20
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,  // 0x30
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,  // 0x40
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,  // 0x50
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,  // 0x60
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 350,  // 0x70
    556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350,  // 0x80
    350, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667,  // 0x90
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,  // 0xa0
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,  // 0xb0
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,  // 0xc0
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,  // 0xd0
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,  // 0xe0
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,  // 0xf0
];

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::content::Content as ReadContent;
    use lopdf::{Document, Object};

    fn party(name: &str, address: &[&str], extra: &[&str]) -> Party {
        Party {
            name: name.to_string(),
            address_lines: address.iter().map(|s| s.to_string()).collect(),
            extra_lines: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn line(description: &str, quantity: &str, unit: &str, tax: &str, amount: &str) -> InvoiceLine {
        InvoiceLine {
            description: description.to_string(),
            quantity: quantity.to_string(),
            unit_price: unit.to_string(),
            tax_rate: tax.to_string(),
            amount: amount.to_string(),
        }
    }

    fn sample_invoice() -> InvoiceDocument {
        InvoiceDocument {
            seller: party(
                "Northwind IT Services GmbH",
                &["Hauptstraße 12", "1010 Wien", "Austria"],
                &[
                    "+43 1 234 5678",
                    "billing@northwind.example",
                    "VAT ATU12345678",
                ],
            ),
            buyer: party(
                "Contoso Dental Practice",
                &["Ringstraße 5", "8010 Graz"],
                &["VAT ATU87654321"],
            ),
            title: "Invoice".to_string(),
            number: "2026-0042".to_string(),
            issue_date: "2026-12-01".to_string(),
            due_date: "2026-12-15".to_string(),
            period: Some("Service period 2026-11-01 – 2026-11-30".to_string()),
            currency: "EUR".to_string(),
            lines: vec![
                line(
                    "Managed workstations (per device)",
                    "12",
                    "25.00",
                    "20%",
                    "300.00",
                ),
                line(
                    "Remote support, ticket #1042: mail server migration to the new \
                     tenant including DNS changes, mailbox moves and user training",
                    "3.5",
                    "90.00",
                    "20%",
                    "315.00",
                ),
                line("Backup storage 500 GB", "1", "45.00", "20%", "45.00"),
                line(
                    "On-site visit (travel flat rate)",
                    "1",
                    "60.00",
                    "",
                    "60.00",
                ),
            ],
            subtotal: "720.00".to_string(),
            tax_lines: vec![("VAT 20%".to_string(), "132.00".to_string())],
            total: "852.00".to_string(),
            paid: "0.00".to_string(),
            balance_due: "852.00".to_string(),
            notes: vec![
                "Payment terms: 14 days net. Please quote the invoice number with your payment."
                    .to_string(),
                "Bank: Erste Bank, IBAN AT61 1904 3002 3457 3201, BIC GIBAATWWXXX".to_string(),
            ],
            status_stamp: None,
        }
    }

    fn many_lines(n: usize) -> Vec<InvoiceLine> {
        (1..=n)
            .map(|i| {
                line(
                    &format!("Line item {i:03}"),
                    "1",
                    &format!("{i}.00"),
                    "20%",
                    &format!("{i}.00"),
                )
            })
            .collect()
    }

    fn sample_statement(rows: usize) -> StatementDocument {
        StatementDocument {
            seller: sample_invoice().seller,
            buyer: sample_invoice().buyer,
            as_of: "2026-12-31".to_string(),
            currency: "EUR".to_string(),
            rows: (1..=rows)
                .map(|i| StatementRow {
                    date: format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                    description: format!("Invoice 2026-{i:04}"),
                    debit: if i % 3 == 0 {
                        String::new()
                    } else {
                        format!("{i}.50")
                    },
                    credit: if i % 3 == 0 {
                        format!("{i}.25")
                    } else {
                        String::new()
                    },
                    balance: format!("{}.75", i * 10),
                })
                .collect(),
            aging: vec![
                ("Current".to_string(), "100.00".to_string()),
                ("1–30 days".to_string(), "250.00".to_string()),
                ("31–60 days".to_string(), "0.00".to_string()),
                ("61–90 days".to_string(), "75.00".to_string()),
                ("Over 90 days".to_string(), "12.00".to_string()),
            ],
            balance: "437.00".to_string(),
        }
    }

    /// Page count and the extracted text of every page.
    fn extract(pdf: &[u8]) -> (usize, Vec<String>) {
        let doc = Document::load_mem(pdf).expect("a valid PDF");
        let pages = doc.get_pages();
        let texts = pages
            .keys()
            .map(|n| doc.extract_text(&[*n]).expect("extractable text"))
            .collect::<Vec<_>>();
        (pages.len(), texts)
    }

    fn all_text(pdf: &[u8]) -> String {
        extract(pdf).1.join("\n")
    }

    /// Every string shown on a page: (font resource, size, x, bytes).
    fn shown_strings(pdf: &[u8]) -> Vec<(Vec<u8>, f32, f32, Vec<u8>)> {
        let doc = Document::load_mem(pdf).expect("a valid PDF");
        let mut out = Vec::new();
        for page_id in doc.get_pages().values() {
            let content = ReadContent::decode(&doc.get_page_content(*page_id)).unwrap();
            let (mut font, mut size, mut x) = (Vec::new(), 0.0, 0.0);
            for op in content.operations {
                match op.operator.as_str() {
                    "Tf" => {
                        font = op.operands[0].as_name().unwrap().to_vec();
                        size = op.operands[1].as_float().unwrap();
                    }
                    "Td" => x = op.operands[0].as_float().unwrap(),
                    "Tj" => out.push((
                        font.clone(),
                        size,
                        x,
                        op.operands[0].as_str().unwrap().to_vec(),
                    )),
                    _ => {}
                }
            }
        }
        out
    }

    fn info_string(pdf: &[u8], key: &[u8]) -> String {
        let doc = Document::load_mem(pdf).unwrap();
        let info = doc.trailer.get(b"Info").unwrap().as_reference().unwrap();
        let bytes = doc
            .get_dictionary(info)
            .unwrap()
            .get(key)
            .unwrap()
            .as_str()
            .unwrap()
            .to_vec();
        if let Some(utf16) = bytes.strip_prefix(&[0xfe, 0xff]) {
            let units: Vec<u16> = utf16
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).unwrap()
        } else {
            String::from_utf8(bytes).unwrap()
        }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn widths_match_the_published_helvetica_metrics() {
        assert_eq!(text_units("0", Font::Regular), 556);
        assert_eq!(text_units("0", Font::Bold), 556);
        // H 722 + e 556 + l 222 + l 222 + o 556.
        assert_eq!(text_units("Hello", Font::Regular), 2278);
        // T 611 + o 611 + t 333 + a 556 + l 278.
        assert_eq!(text_units("Total", Font::Bold), 2389);
        // 1 556 + , 278 + 2 556 + 5 556 + 0 556 + . 278 + 0 556 + 0 556.
        assert_eq!(text_units("1,250.00", Font::Regular), 3892);
        // € 556 + space 278 + W 944 + @ 1015; i 222 vs. bold 278.
        assert_eq!(
            text_units("€ W@i", Font::Regular),
            556 + 278 + 944 + 1015 + 222
        );
        assert_eq!(text_units("€ W@i", Font::Bold), 556 + 278 + 944 + 975 + 278);
        assert_eq!(text_units("é–", Font::Regular), 556 + 556);
        assert!((text_width("0", Font::Regular, 10.0) - 5.56).abs() < 1e-4);
        assert!((text_width("1,250.00", Font::Regular, 9.0) - 35.028).abs() < 1e-3);
    }

    #[test]
    fn text_is_encoded_to_windows_1252() {
        assert_eq!(
            encode("€éü–—’“”ß"),
            vec![0x80, 0xe9, 0xfc, 0x96, 0x97, 0x92, 0x93, 0x94, 0xdf]
        );
        assert_eq!(encode("a中b😀"), b"a?b?".to_vec());
        assert_eq!(encode("1\u{202f}250\tx"), b"1 250 x".to_vec());
        assert_eq!(encode("(a)\\"), b"(a)\\".to_vec());
    }

    #[test]
    fn wrap_keeps_every_line_within_the_width() {
        let long = "Remote support for the migration of the accounting server including \
                    Supercalifragilisticexpialidociousandthensomemoretext overnight";
        let lines = wrap(long, Font::Regular, 9.0, 120.0);
        assert!(lines.len() > 3, "{lines:?}");
        for l in &lines {
            assert!(
                text_width(l, Font::Regular, 9.0) <= 120.001,
                "{l:?} too wide"
            );
        }
        assert_eq!(lines.concat().replace(' ', ""), long.replace(' ', ""));
        assert_eq!(wrap("", Font::Regular, 9.0, 100.0), vec![String::new()]);
        assert_eq!(wrap("a\nb", Font::Regular, 9.0, 100.0), vec!["a", "b"]);
    }

    #[test]
    fn invoice_contains_all_its_content() {
        let doc = sample_invoice();
        let pdf = invoice_pdf(&doc);
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.ends_with(b"%%EOF"));
        let (pages, _) = extract(&pdf);
        assert_eq!(pages, 1);
        let text = all_text(&pdf);
        for needle in [
            "Northwind IT Services GmbH",
            "Hauptstraße 12",
            "1010 Wien",
            "billing@northwind.example",
            "Contoso Dental Practice",
            "Ringstraße 5",
            "Invoice",
            "2026-0042",
            "2026-12-01",
            "2026-12-15",
            "Service period 2026-11-01 – 2026-11-30",
            "BILL TO",
            "Subtotal",
            "720.00",
            "VAT 20%",
            "132.00",
            "Total (EUR)",
            "852.00",
            "Balance due (EUR)",
            "Payment terms: 14 days net.",
            "IBAN AT61 1904 3002 3457 3201",
            "Page 1 of 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        // Descriptions may wrap: compare with whitespace collapsed.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for l in &doc.lines {
            let description = l
                .description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(flat.contains(&description), "missing {description:?}");
            assert!(text.contains(&l.amount), "missing {:?}", l.amount);
        }
        // The long description really wrapped.
        assert!(!text.contains(&doc.lines[1].description));
    }

    #[test]
    fn document_info_is_set() {
        let mut doc = sample_invoice();
        doc.seller.name = "Société Générale – Müller".to_string();
        let pdf = invoice_pdf(&doc);
        assert_eq!(info_string(&pdf, b"Title"), "Invoice 2026-0042");
        assert_eq!(info_string(&pdf, b"Author"), "Société Générale – Müller");
        assert_eq!(info_string(&pdf, b"Creator"), "SupportTracker");
        let raw = String::from_utf8_lossy(&pdf);
        assert!(!raw.contains("CreationDate") && !raw.contains("ModDate"));
    }

    #[test]
    fn non_ascii_text_comes_out_right() {
        let mut doc = sample_invoice();
        doc.seller.name = "Société Générale – Müller".to_string();
        doc.buyer.name = "Bäckerei “Zum Löwen” — O’Brien".to_string();
        doc.lines[0].description = "Überprüfung der Firewall (Straße, Größe) \\ ok".to_string();
        doc.lines[0].amount = "€ 1 250,00".to_string();
        doc.total = "€ 1 802,00".to_string();
        doc.notes
            .push("Steuerfrei – tax exempt; Kanji 中 is not in cp1252".to_string());
        let text = all_text(&invoice_pdf(&doc));
        for needle in [
            "Société Générale – Müller",
            "Bäckerei “Zum Löwen” — O’Brien",
            "Überprüfung der Firewall (Straße, Größe) \\ ok",
            "€ 1 250,00",
            "€ 1 802,00",
            "Kanji ? is not in cp1252",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn same_input_gives_same_bytes() {
        let doc = sample_invoice();
        assert_eq!(invoice_pdf(&doc), invoice_pdf(&doc.clone()));
        let statement = sample_statement(40);
        assert_eq!(statement_pdf(&statement), statement_pdf(&statement.clone()));
        let mut other = doc.clone();
        other.number = "2026-0043".to_string();
        assert_ne!(invoice_pdf(&doc), invoice_pdf(&other));
    }

    #[test]
    fn two_page_invoice_is_numbered() {
        let mut doc = sample_invoice();
        doc.lines = many_lines(40);
        let pdf = invoice_pdf(&doc);
        let (pages, texts) = extract(&pdf);
        assert_eq!(pages, 2);
        assert!(texts[0].contains("Page 1 of 2"));
        assert!(texts[1].contains("Page 2 of 2"));
        // The continuation page repeats the table header and says whose it is.
        assert!(texts[1].contains("Description"));
        assert!(texts[1].contains("Invoice 2026-0042"));
        assert!(texts[1].contains("Balance due (EUR)"));
    }

    #[test]
    fn long_invoice_flows_over_pages_with_the_header_repeated() {
        let mut doc = sample_invoice();
        doc.lines = many_lines(200);
        let pdf = invoice_pdf(&doc);
        let (pages, texts) = extract(&pdf);
        assert!(pages > 1, "{pages} pages");
        let text = texts.join("\n");
        for i in 1..=200 {
            assert_eq!(count(&text, &format!("Line item {i:03}\n")), 1, "line {i}");
        }
        for (n, page) in texts.iter().enumerate() {
            assert!(page.contains(&format!("Page {} of {pages}", n + 1)));
            if page.contains("Line item") {
                assert!(page.contains("Description") && page.contains("Amount (EUR)"));
            }
        }
        // Nothing is drawn into the footer area or off the page.
        for (_, _, x, _) in shown_strings(&pdf) {
            assert!((0.0..PAGE_W).contains(&x));
        }
    }

    #[test]
    fn a_row_taller_than_a_page_is_split() {
        let mut doc = sample_invoice();
        doc.lines[1].description = "word ".repeat(4000);
        let pdf = invoice_pdf(&doc);
        let (pages, texts) = extract(&pdf);
        assert!(pages >= 2);
        let text = texts.join("\n");
        assert_eq!(count(&text, "word"), 4000);
        assert!(text.contains("852.00"));
    }

    #[test]
    fn amounts_are_right_aligned_exactly() {
        let mut doc = sample_invoice();
        doc.lines
            .push(line("Wide", "1", "1.00", "", "1,111,111.11"));
        let pdf = invoice_pdf(&doc);
        // Amounts that appear in no other column.
        let amounts: Vec<Vec<u8>> = doc
            .lines
            .iter()
            .map(|l| &l.amount)
            .filter(|a| {
                !doc.lines
                    .iter()
                    .any(|l| &l.unit_price == *a || &l.quantity == *a)
            })
            .map(|a| encode(a))
            .collect();
        assert!(amounts.len() >= 3);
        let mut checked = 0;
        for (font, size, x, bytes) in shown_strings(&pdf) {
            if font == b"F1" && amounts.contains(&bytes) {
                let units: u32 = bytes.iter().map(|b| byte_units(*b, Font::Regular)).sum();
                let right = x + units as f32 * size / 1000.0;
                assert!((right - (RIGHT - CELL_PAD_X)).abs() < 0.01, "{right}");
                checked += 1;
            }
        }
        assert!(checked >= amounts.len(), "{checked}");
    }

    #[test]
    fn status_stamp_is_shown() {
        let mut doc = sample_invoice();
        doc.status_stamp = Some("Paid".to_string());
        assert!(all_text(&invoice_pdf(&doc)).contains("PAID"));
        doc.status_stamp = Some("VOID".to_string());
        doc.title = "Credit note".to_string();
        let text = all_text(&invoice_pdf(&doc));
        assert!(text.contains("VOID") && text.contains("Credit note no."));
        doc.status_stamp = None;
        assert!(!all_text(&invoice_pdf(&doc)).contains("VOID"));
    }

    #[test]
    fn empty_invoice_still_renders() {
        let doc = InvoiceDocument::default();
        let pdf = invoice_pdf(&doc);
        let (pages, texts) = extract(&pdf);
        assert_eq!(pages, 1);
        assert!(texts[0].contains("Page 1 of 1"));
    }

    #[test]
    fn statement_contains_rows_aging_and_balance() {
        let doc = sample_statement(5);
        let pdf = statement_pdf(&doc);
        assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF"));
        let text = all_text(&pdf);
        for needle in [
            "Northwind IT Services GmbH",
            "Contoso Dental Practice",
            "Statement of account",
            "2026-12-31",
            "STATEMENT FOR",
            "AGING",
            "1–30 days",
            "Over 90 days",
            "437.00",
            "Page 1 of 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        for row in &doc.rows {
            for cell in [&row.date, &row.description, &row.balance] {
                assert!(text.contains(cell.as_str()), "missing {cell:?}");
            }
        }
        assert_eq!(info_string(&pdf, b"Author"), "Northwind IT Services GmbH");
    }

    #[test]
    fn long_statement_paginates() {
        let doc = sample_statement(300);
        let pdf = statement_pdf(&doc);
        let (pages, texts) = extract(&pdf);
        assert!(pages > 1, "{pages} pages");
        let text = texts.join("\n");
        for i in 1..=300 {
            assert_eq!(
                count(&text, &format!("Invoice 2026-{i:04}\n")),
                1,
                "row {i}"
            );
        }
        assert!(texts[0].contains(&format!("Page 1 of {pages}")));
        let with_rows = texts.iter().filter(|t| t.contains("Invoice 2026-")).count();
        assert!(count(&text, "Debit") >= with_rows);
        assert!(texts[pages - 1].contains("437.00"));
    }

    /// `PDF_SAMPLE_DIR=/tmp cargo test -p web --lib pdf` writes sample files
    /// to look at; without the variable the test does nothing.
    #[test]
    fn write_samples_when_asked() {
        let Ok(dir) = std::env::var("PDF_SAMPLE_DIR") else {
            return;
        };
        let dir = std::path::Path::new(&dir);
        let mut doc = sample_invoice();
        doc.seller.name = "Société Générale – Müller IT".to_string();
        doc.status_stamp = Some("PAID".to_string());
        doc.lines.push(line(
            "Licence “Office 365 E3” – €-priced",
            "10",
            "€ 32,00",
            "20%",
            "€ 320,00",
        ));
        std::fs::write(dir.join("sample-invoice.pdf"), invoice_pdf(&doc)).unwrap();
        doc.lines = many_lines(40);
        doc.status_stamp = None;
        std::fs::write(dir.join("sample-invoice-2p.pdf"), invoice_pdf(&doc)).unwrap();
        std::fs::write(
            dir.join("sample-statement.pdf"),
            statement_pdf(&sample_statement(60)),
        )
        .unwrap();
    }

    #[test]
    fn object_types_are_sane() {
        let doc = Document::load_mem(&invoice_pdf(&sample_invoice())).unwrap();
        let fonts = doc
            .objects
            .values()
            .filter_map(|o| match o {
                Object::Dictionary(d)
                    if d.get(b"Type").and_then(|t| t.as_name()).ok() == Some(b"Font") =>
                {
                    Some(d.get(b"BaseFont").unwrap().as_name().unwrap().to_vec())
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        assert!(
            fonts.contains(&b"Helvetica".to_vec()) && fonts.contains(&b"Helvetica-Bold".to_vec())
        );
    }
}
