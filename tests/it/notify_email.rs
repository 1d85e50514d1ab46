//! Email over SMTP against a real SMTP server (aiosmtpd, see `st_tests::smtp`): what
//! arrives is what was sent, byte for byte, and failures are classified for retries.
//! No database.

use std::time::Duration;

use sha2::{Digest, Sha256};
use st_tests::smtp::SmtpServer;
use web::notify::email::{send, Attachment, OutgoingEmail, SmtpSettings};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A small valid PDF with every byte value inside a stream, so nothing survives a transfer
/// that is not 8-bit clean unless the attachment is encoded.
fn pdf() -> Vec<u8> {
    let binary: Vec<u8> = (0..=255u8).collect();
    let mut pdf = Vec::new();
    pdf.extend_from_slice(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");
    pdf.extend_from_slice(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    pdf.extend_from_slice(b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n");
    pdf.extend_from_slice(format!("3 0 obj\n<< /Length {} >>\nstream\n", binary.len()).as_bytes());
    pdf.extend_from_slice(&binary);
    pdf.extend_from_slice(b"\r\n.\r\n.\n\nendstream\nendobj\n");
    pdf.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    pdf
}

fn invoice(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        from: "Acme IT <billing@acme.test>".into(),
        to: to.into(),
        reply_to: Some("Acme Support <support@acme.test>".into()),
        subject: "Facture n° 12 — é".into(),
        text: "Bonjour Chloé,\r\n\r\nVoici la facture n° 12.\r\n.\r\nMerci !\r\n".into(),
        html: Some("<p>Bonjour Chloé,</p><p>Voici la <b>facture n° 12</b>.</p>".into()),
        message_id: format!("{}@acme.test", uuid::Uuid::new_v4()),
        attachments: vec![Attachment {
            file_name: "facture-12.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: pdf(),
        }],
        headers: vec![("X-SupportTracker-Notification".into(), "invoice-12".into())],
    }
}

fn settings(server: &SmtpServer) -> SmtpSettings {
    SmtpSettings::parse(&server.url()).unwrap()
}

#[tokio::test]
async fn notify_email_delivers_text_html_and_attachment_once() {
    let server = SmtpServer::start();
    let email = invoice("Chloé Client <chloe@client.test>");
    let reply = send(&settings(&server), &email, TIMEOUT).await.unwrap();
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(reply.contains("queued as"), "{reply}");

    let messages = server.wait_for(1, TIMEOUT).await;
    // Give a duplicate the time to show up: there must be none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.messages().len(), 1);
    let mail = &messages[0];

    assert_eq!(mail.mail_from, "billing@acme.test");
    assert_eq!(mail.rcpt_tos, vec!["chloe@client.test".to_owned()]);
    assert_eq!(
        mail.message_id().as_deref(),
        Some(email.message_id.as_str())
    );
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(
        raw.contains(&format!("Message-ID: <{}>\r\n", email.message_id)),
        "{raw}"
    );
    assert_eq!(mail.subject().as_deref(), Some("Facture n° 12 — é"));
    assert_eq!(
        mail.header("X-SupportTracker-Notification").as_deref(),
        Some("invoice-12")
    );
    assert!(mail
        .header("Reply-To")
        .is_some_and(|r| r.contains("support@acme.test")));

    let text = mail.text().expect("a text/plain part");
    assert!(text.contains("Voici la facture n° 12."), "{text}");
    assert!(
        text.contains("\n.\r\nMerci !") || text.contains("\n.\nMerci !"),
        "{text:?}"
    );
    let html = mail.html().expect("a text/html part");
    assert!(html.contains("<b>facture n° 12</b>"), "{html}");

    let attachments = mail.attachments();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    let (name, content_type, bytes) = &attachments[0];
    assert_eq!(name, "facture-12.pdf");
    assert_eq!(content_type, "application/pdf");
    assert_eq!(
        hex::encode(Sha256::digest(bytes)),
        hex::encode(Sha256::digest(pdf()))
    );
    assert_eq!(bytes, &pdf());
}

#[tokio::test]
async fn notify_email_without_html_or_attachments_is_plain_text() {
    let server = SmtpServer::start();
    let mut email = invoice("chloe@client.test");
    email.html = None;
    email.attachments.clear();
    send(&settings(&server), &email, TIMEOUT).await.unwrap();
    let mail = &server.wait_for(1, TIMEOUT).await[0];
    assert!(mail.text().unwrap().contains("Voici la facture"));
    assert_eq!(mail.html(), None);
    assert!(mail.attachments().is_empty());
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(!raw.contains("multipart/"), "{raw}");
}

#[tokio::test]
async fn notify_email_refused_connection_is_transient_until_the_server_is_back() {
    let mut server = SmtpServer::start();
    let port = server.port;
    let settings = settings(&server);
    server.stop();

    let error = send(&settings, &invoice("chloe@client.test"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(!error.permanent, "{error:?}");
    assert!(
        error.message.contains(&format!("127.0.0.1:{port}")),
        "{error:?}"
    );

    let back = SmtpServer::start_on(port);
    let email = invoice("chloe@client.test");
    send(&settings, &email, TIMEOUT).await.unwrap();
    let messages = back.wait_for(1, TIMEOUT).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].message_id().as_deref(),
        Some(email.message_id.as_str())
    );
    drop(server);
}

#[tokio::test]
async fn notify_email_restart_keeps_earlier_messages() {
    let mut server = SmtpServer::start();
    let settings = settings(&server);
    send(&settings, &invoice("one@client.test"), TIMEOUT)
        .await
        .unwrap();
    server.restart();
    send(&settings, &invoice("two@client.test"), TIMEOUT)
        .await
        .unwrap();
    let messages = server.wait_for(2, TIMEOUT).await;
    let recipients: Vec<_> = messages.iter().map(|m| m.rcpt_tos.clone()).collect();
    assert_eq!(
        recipients,
        vec![
            vec!["one@client.test".to_owned()],
            vec!["two@client.test".to_owned()]
        ]
    );
}

#[tokio::test]
async fn notify_email_5xx_reply_is_permanent_and_4xx_transient() {
    let server = SmtpServer::start();
    let settings = settings(&server);

    let error = send(&settings, &invoice("reject-me@client.test"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.permanent, "{error:?}");
    assert!(error.message.contains("550"), "{error:?}");
    assert!(error.message.contains("mailbox unavailable"), "{error:?}");
    assert!(
        error
            .message
            .contains(&format!("127.0.0.1:{}", server.port)),
        "{error:?}"
    );

    let error = send(&settings, &invoice("defer-me@client.test"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(!error.permanent, "{error:?}");
    assert!(error.message.contains("451"), "{error:?}");

    let error = send(&settings, &invoice("not an address"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.permanent, "{error:?}");
    assert!(
        error.message.starts_with("invalid recipient address"),
        "{error:?}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.messages().is_empty());
}
