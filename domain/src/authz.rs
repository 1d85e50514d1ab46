//! Who may do what: the one role × action matrix. The server checks it on every route
//! (`web::auth`), and `docs/roles.md` shows the same table (a test keeps the two equal).
//!
//! Record-level rules that a role alone cannot decide live next to the matrix: only an owner
//! may make, change, disable or remove an owner; every record is also scoped to the tenant of
//! the person asking.

use crate::identity::Role;

/// An action a signed-in person may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See customer companies (list, detail, history).
    ViewCompanies,
    /// Register, rename, archive and restore customer companies; change their customer status
    /// and profile (addresses, phone, website, notes, tags).
    EditCompanies,
    /// Set a company's monthly contract rate and what the contract covers.
    SetCompanyRate,
    /// Add and change a company's contacts (its people).
    EditContacts,
    /// Register and change assets (equipment), attach documents, import assets.
    EditAssets,
    /// The credentials vault: see labels, add and change credentials, reveal their secrets,
    /// share them by link. Never clients.
    UseVault,
    /// Read the audit trail (Activity).
    ViewActivity,
    /// See the tenant's people and their roles.
    ViewUsers,
    /// Invite people, change their role, disable, enable or remove them.
    ManageUsers,
    /// See and revoke every person's API tokens.
    ManageAllTokens,
    /// Create, list and revoke one's own API tokens.
    OwnTokens,
    /// One's own account: password, sessions, sign out; read the organisation's settings.
    OwnAccount,
    /// The tenant's name, currency and time zone.
    TenantSettings,
    /// See work orders, their timelines, time entries, materials and the unbilled work.
    ViewWorkOrders,
    /// Raise and change work orders: assign, move, comment, attach, issue status links.
    EditWorkOrders,
    /// Start and stop timers, log time and record materials on work orders.
    LogTime,
    /// Ask for work: raise a work order for one's own company (portal people).
    RequestWork,
    /// Business hours, SLA policies, work types and rates, technicians' labour costs.
    ServiceSettings,
    /// See the delivery log: every message sent or not, its content (links hidden) and
    /// its outcome.
    ViewNotifications,
    /// Resend messages; change message templates; set up the SMTP server and the SMS
    /// provider, and send test messages.
    ManageNotifications,
    /// See invoices, payments, balances, statements and the aging report.
    ViewBilling,
    /// Record payments (and unapply, refund, reverse them), raise ad-hoc invoices and credit
    /// notes, void invoices, set how contracts are billed.
    ManageBilling,
    /// Preview and run the billing of contracts by hand.
    RunBilling,
}

impl Action {
    pub const ALL: [Action; 23] = [
        Action::ViewCompanies,
        Action::EditCompanies,
        Action::SetCompanyRate,
        Action::EditContacts,
        Action::EditAssets,
        Action::UseVault,
        Action::ViewActivity,
        Action::ViewUsers,
        Action::ManageUsers,
        Action::ManageAllTokens,
        Action::OwnTokens,
        Action::OwnAccount,
        Action::TenantSettings,
        Action::ViewWorkOrders,
        Action::EditWorkOrders,
        Action::LogTime,
        Action::RequestWork,
        Action::ServiceSettings,
        Action::ViewNotifications,
        Action::ManageNotifications,
        Action::ViewBilling,
        Action::ManageBilling,
        Action::RunBilling,
    ];

    /// How the action reads in the matrix.
    pub fn describe(self) -> &'static str {
        match self {
            Action::ViewCompanies => "See customer companies (list, detail, history)",
            Action::EditCompanies => {
                "Register, rename, archive, restore companies; edit their status and profile"
            }
            Action::SetCompanyRate => "Set a company's monthly contract rate and coverage",
            Action::EditContacts => "Add and change a company's contacts",
            Action::EditAssets => "Register and change assets, attach documents, import",
            Action::UseVault => "Credentials vault: add, change, reveal secrets, share links",
            Action::ViewActivity => "Read the audit trail (Activity)",
            Action::ViewUsers => "See the team: people and their roles",
            Action::ManageUsers => "Invite, change role, disable, enable, remove people",
            Action::ManageAllTokens => "See and revoke everyone's API tokens",
            Action::OwnTokens => "Create, list, revoke one's own API tokens",
            Action::OwnAccount => {
                "Own password and sessions, sign out; see the organisation's settings"
            }
            Action::TenantSettings => "Change the organisation's name, currency, time zone",
            Action::ViewWorkOrders => {
                "See work orders, their timelines, time, materials and unbilled work"
            }
            Action::EditWorkOrders => {
                "Raise and change work orders: assign, move, comment, attach, status links"
            }
            Action::LogTime => {
                "Start and stop timers, log time and record materials on work orders"
            }
            Action::RequestWork => "Raise a work order for one's own company (portal)",
            Action::ServiceSettings => {
                "Business hours, SLA policies, work types and rates, labour costs"
            }
            Action::ViewNotifications => "See the delivery log of email and SMS messages",
            Action::ManageNotifications => {
                "Resend messages; message templates; email and SMS providers, test messages"
            }
            Action::ViewBilling => "See invoices, payments, balances, statements, AR aging",
            Action::ManageBilling => {
                "Record and correct payments; invoices, credit notes, voids; contract billing"
            }
            Action::RunBilling => "Preview and run contract billing by hand",
        }
    }

    /// The roles allowed this action.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ViewCompanies => &[Owner, Admin, Technician, Accountant],
            Action::EditCompanies => &[Owner, Admin],
            Action::SetCompanyRate => &[Owner, Admin, Accountant],
            Action::EditContacts => &[Owner, Admin, Technician],
            Action::EditAssets => &[Owner, Admin, Technician],
            Action::UseVault => &[Owner, Admin, Technician],
            Action::ViewActivity => &[Owner, Admin, Accountant],
            Action::ViewUsers => &[Owner, Admin],
            Action::ManageUsers => &[Owner, Admin],
            Action::ManageAllTokens => &[Owner, Admin],
            Action::OwnTokens => &[Owner, Admin, Technician, Accountant],
            Action::OwnAccount => &[Owner, Admin, Technician, Accountant, Client],
            Action::TenantSettings => &[Owner],
            Action::ViewWorkOrders => &[Owner, Admin, Technician, Accountant],
            Action::EditWorkOrders => &[Owner, Admin, Technician],
            Action::LogTime => &[Owner, Admin, Technician],
            Action::RequestWork => &[Client],
            Action::ServiceSettings => &[Owner, Admin],
            Action::ViewNotifications => &[Owner, Admin, Accountant],
            Action::ManageNotifications => &[Owner, Admin],
            Action::ViewBilling => &[Owner, Admin, Accountant],
            Action::ManageBilling => &[Owner, Admin, Accountant],
            Action::RunBilling => &[Owner, Admin],
        }
    }
}

/// True when `role` may do `action`.
pub fn allows(role: Role, action: Action) -> bool {
    action.roles().contains(&role)
}

/// Only an owner may give the owner role, or change, disable or remove an owner.
pub fn may_manage_member(actor: Role, member_role: Role, new_role: Option<Role>) -> bool {
    if !allows(actor, Action::ManageUsers) {
        return false;
    }
    let touches_owner = member_role == Role::Owner || new_role == Some(Role::Owner);
    !touches_owner || actor == Role::Owner
}

/// The matrix as a Markdown table (the one in `docs/roles.md`).
pub fn matrix_markdown() -> String {
    let mut out = String::from("| Action |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for action in Action::ALL {
        out.push_str(&format!("| {} |", action.describe()));
        for role in Role::ALL {
            out.push_str(if allows(role, action) {
                " ✓ |"
            } else {
                " – |"
            });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_only_their_own_account_and_asking_for_work() {
        for action in Action::ALL {
            assert_eq!(
                allows(Role::Client, action),
                matches!(action, Action::OwnAccount | Action::RequestWork),
                "{action:?}"
            );
        }
    }

    #[test]
    fn only_owners_touch_owners() {
        assert!(may_manage_member(
            Role::Owner,
            Role::Owner,
            Some(Role::Admin)
        ));
        assert!(may_manage_member(
            Role::Owner,
            Role::Technician,
            Some(Role::Owner)
        ));
        assert!(!may_manage_member(Role::Admin, Role::Owner, None));
        assert!(!may_manage_member(
            Role::Admin,
            Role::Technician,
            Some(Role::Owner)
        ));
        assert!(may_manage_member(
            Role::Admin,
            Role::Technician,
            Some(Role::Accountant)
        ));
        assert!(!may_manage_member(Role::Technician, Role::Technician, None));
    }

    #[test]
    fn the_documented_matrix_is_the_enforced_one() {
        let doc = include_str!("../../docs/roles.md");
        assert!(
            doc.contains(&matrix_markdown()),
            "docs/roles.md must contain exactly this table:\n{}",
            matrix_markdown()
        );
    }
}
