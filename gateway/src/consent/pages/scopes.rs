//! What the common scopes of each provider preset let an agent do, in the words the consent
//! page shows. A scope not listed here is shown as it is, with "no description known": the
//! page never guesses what an unknown permission means.

/// The plain-words meaning of `scope` at `provider` (a preset name in lower case: `github`,
/// `google`, `microsoft`, `slack`, `salesforce`, `atlassian`), or of an OpenID Connect scope
/// at any provider. `None` when unknown.
pub fn scope_meaning(provider: &str, scope: &str) -> Option<&'static str> {
    let found = match provider {
        "github" => lookup(GITHUB, scope),
        "google" => lookup(GOOGLE, scope),
        // Entra ID compares scopes without case and accepts them with the Graph prefix.
        "microsoft" => {
            let short = scope
                .strip_prefix("https://graph.microsoft.com/")
                .unwrap_or(scope);
            MICROSOFT
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(short))
                .map(|(_, m)| *m)
        }
        "slack" => lookup(SLACK, scope),
        "salesforce" => lookup(SALESFORCE, scope),
        "atlassian" => lookup(ATLASSIAN, scope),
        _ => None,
    };
    found.or_else(|| lookup(OPENID, scope))
}

fn lookup(table: &[(&str, &'static str)], scope: &str) -> Option<&'static str> {
    table.iter().find(|(s, _)| *s == scope).map(|(_, m)| *m)
}

const OPENID: &[(&str, &str)] = &[
    ("openid", "confirm who you are (your account identifier)"),
    ("profile", "read your basic profile: name and picture"),
    ("email", "read your email address"),
    ("address", "read your postal address"),
    ("phone", "read your phone number"),
    (
        "offline_access",
        "stay connected: refresh access without asking you again",
    ),
];

const GITHUB: &[(&str, &str)] = &[
    (
        "repo",
        "read and change all your repositories, public and private: code, issues, pull requests",
    ),
    ("public_repo", "read and change your public repositories"),
    (
        "repo:status",
        "read and set commit statuses in your repositories",
    ),
    ("delete_repo", "delete your repositories"),
    ("workflow", "change GitHub Actions workflow files"),
    ("read:user", "read your profile"),
    ("user", "read and change your profile"),
    ("user:email", "read your email addresses"),
    (
        "read:org",
        "read your organisations, their members and teams",
    ),
    (
        "admin:org",
        "fully manage your organisations, their members and teams",
    ),
    ("gist", "create and change your gists"),
    (
        "notifications",
        "read your notifications and mark them as read",
    ),
    ("read:packages", "download packages you can access"),
    ("write:packages", "publish packages as you"),
    ("project", "read and change your projects"),
];

const GOOGLE: &[(&str, &str)] = &[
    (
        "https://www.googleapis.com/auth/userinfo.email",
        "read your email address",
    ),
    (
        "https://www.googleapis.com/auth/userinfo.profile",
        "read your basic profile: name and picture",
    ),
    (
        "https://www.googleapis.com/auth/gmail.readonly",
        "read all your Gmail messages and settings",
    ),
    (
        "https://www.googleapis.com/auth/gmail.send",
        "send email as you",
    ),
    (
        "https://www.googleapis.com/auth/gmail.modify",
        "read, write, label and delete your Gmail messages (not delete permanently)",
    ),
    (
        "https://www.googleapis.com/auth/calendar",
        "see, change and delete all your calendars",
    ),
    (
        "https://www.googleapis.com/auth/calendar.readonly",
        "see all your calendars",
    ),
    (
        "https://www.googleapis.com/auth/calendar.events",
        "see and change events in all your calendars",
    ),
    (
        "https://www.googleapis.com/auth/drive",
        "see, change and delete all your Google Drive files",
    ),
    (
        "https://www.googleapis.com/auth/drive.readonly",
        "see and download all your Google Drive files",
    ),
    (
        "https://www.googleapis.com/auth/drive.file",
        "only the Google Drive files this agent creates or you open with it",
    ),
    (
        "https://www.googleapis.com/auth/documents",
        "see, change and delete all your Google Docs documents",
    ),
    (
        "https://www.googleapis.com/auth/spreadsheets",
        "see, change and delete all your Google Sheets spreadsheets",
    ),
];

const MICROSOFT: &[(&str, &str)] = &[
    ("User.Read", "sign you in and read your profile"),
    (
        "User.ReadBasic.All",
        "read the basic profiles of people in your organisation",
    ),
    ("Mail.Read", "read your mail"),
    ("Mail.ReadWrite", "read, change and delete your mail"),
    ("Mail.Send", "send mail as you"),
    ("Calendars.Read", "read your calendars"),
    ("Calendars.ReadWrite", "read and change your calendars"),
    ("Contacts.Read", "read your contacts"),
    ("Files.Read", "read your OneDrive files"),
    (
        "Files.ReadWrite",
        "read, change and delete your OneDrive files",
    ),
    (
        "Files.Read.All",
        "read all files you can access, including shared ones",
    ),
    (
        "Files.ReadWrite.All",
        "read, change and delete all files you can access, including shared ones",
    ),
    (
        "Sites.Read.All",
        "read items in all SharePoint sites you can access",
    ),
    ("Chat.Read", "read your Teams chat messages"),
    (
        "ChannelMessage.Send",
        "post messages in Teams channels as you",
    ),
];

const SLACK: &[(&str, &str)] = &[
    ("channels:read", "see the public channels of your workspace"),
    (
        "channels:history",
        "read messages in public channels you are in",
    ),
    ("groups:read", "see the private channels you are in"),
    (
        "groups:history",
        "read messages in private channels you are in",
    ),
    ("im:read", "see your direct message conversations"),
    ("im:history", "read your direct messages"),
    ("mpim:history", "read your group direct messages"),
    ("chat:write", "send messages as you"),
    ("users:read", "see the people in your workspace"),
    (
        "users:read.email",
        "see the email addresses of people in your workspace",
    ),
    (
        "files:read",
        "see files shared in channels and conversations you are in",
    ),
    ("files:write", "upload, change and delete files as you"),
    ("search:read", "search your workspace's messages and files"),
    ("reactions:write", "add and remove emoji reactions as you"),
];

const SALESFORCE: &[(&str, &str)] = &[
    (
        "api",
        "use the Salesforce API as you: read and change the records you can access",
    ),
    (
        "refresh_token",
        "stay connected: refresh access without asking you again",
    ),
    ("full", "everything your Salesforce user can do"),
    (
        "id",
        "read your Salesforce identity: user name, email and organisation",
    ),
    ("web", "use Salesforce in the browser as you"),
    ("chatter_api", "read and post in Chatter as you"),
    (
        "content",
        "read and change your Salesforce files and content",
    ),
    ("visualforce", "use Visualforce pages as you"),
    (
        "custom_permissions",
        "read the custom permissions of your user",
    ),
    ("cdp_query_api", "query Data Cloud data you can access"),
];

const ATLASSIAN: &[(&str, &str)] = &[
    ("read:me", "read your Atlassian account profile"),
    ("read:account", "read your account details"),
    (
        "read:jira-work",
        "read Jira projects and issues, with comments and attachments",
    ),
    (
        "write:jira-work",
        "create and change Jira issues, comments and attachments",
    ),
    (
        "read:jira-user",
        "read the names and profiles of Jira users",
    ),
    (
        "manage:jira-project",
        "create and change Jira projects and their settings",
    ),
    (
        "manage:jira-configuration",
        "change the settings of your Jira sites",
    ),
    (
        "read:confluence-content.all",
        "read all Confluence pages, blog posts and comments you can access",
    ),
    (
        "read:confluence-content.summary",
        "read summaries of Confluence content",
    ),
    (
        "write:confluence-content",
        "create and change Confluence pages and blog posts",
    ),
    (
        "read:confluence-space.summary",
        "read summaries of Confluence spaces",
    ),
    ("search:confluence", "search Confluence content"),
    (
        "read:confluence-user",
        "read the profiles of Confluence users",
    ),
];
