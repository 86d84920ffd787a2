//! The index is judged on a 5,000-tool catalog that looks like a large gateway's: fifty
//! services, each with the same verbs over its own objects (so words such as "customer",
//! "issue", "message" or "order" appear in hundreds of tools), plus hand-written tools that
//! the natural-language queries are about and near-miss distractors that share their words.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::*;

/// One tool of the test catalog, owning what a [`Doc`] borrows.
struct Tool {
    name: String,
    title: Option<String>,
    description: String,
    schema: Map<String, Value>,
}

impl Tool {
    fn doc(&self) -> Doc<'_> {
        Doc {
            name: &self.name,
            title: self.title.as_deref(),
            description: Some(&self.description),
            input_schema: &self.schema,
        }
    }
}

fn schema(params: &[(&str, &str)]) -> Map<String, Value> {
    let properties: Map<String, Value> = params
        .iter()
        .map(|(name, description)| {
            (
                name.to_string(),
                json!({"type": "string", "description": description}),
            )
        })
        .collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    schema
}

/// Parameters of a tool: name and description.
type Params = &'static [(&'static str, &'static str)];

/// A service: prefix, the name users know it by, the parameter that scopes every call, and
/// its objects (singular, snake case).
type Service = (
    &'static str,
    &'static str,
    (&'static str, &'static str),
    &'static [&'static str],
);

/// A verb every object gets: tool name, description and parameters. `{o}`/`{os}` stand for the
/// object and its plural, `{s}` for the service.
type Verb = (&'static str, &'static str, Params);

/// Fifty services a large organisation might put behind one gateway.
#[rustfmt::skip]
const SERVICES: &[Service] = &[
    ("github", "GitHub", ("repo", "Repository as owner/name"), &["repository", "issue", "pull_request", "branch", "commit", "release", "workflow_run", "gist", "label", "milestone", "webhook", "team"]),
    ("gitlab", "GitLab", ("project_id", "ID or path of the GitLab project"), &["project", "issue", "merge_request", "branch", "pipeline", "job", "release", "tag", "snippet", "milestone", "runner", "group"]),
    ("jira", "Jira", ("project_key", "Key of the Jira project, e.g. OPS"), &["issue", "project", "sprint", "board", "epic", "comment", "worklog", "version", "component", "filter", "attachment", "user"]),
    ("linear", "Linear", ("team_id", "ID of the Linear team"), &["issue", "project", "cycle", "team", "comment", "label", "workflow_state", "roadmap", "document", "attachment", "user", "view"]),
    ("slack", "Slack", ("channel", "Channel ID or name"), &["channel", "message", "user", "user_group", "reminder", "file", "bookmark", "emoji", "pin", "reaction", "canvas", "workflow"]),
    ("teams", "Microsoft Teams", ("team_id", "ID of the team"), &["team", "channel", "chat", "message", "meeting", "member", "tab", "app", "tag", "call_record", "shift", "file"]),
    ("discord", "Discord", ("guild_id", "ID of the Discord server"), &["guild", "channel", "message", "role", "member", "invite", "webhook", "emoji", "thread", "event", "ban", "sticker"]),
    ("salesforce", "Salesforce", ("org", "Salesforce org alias"), &["account", "contact", "lead", "opportunity", "case", "campaign", "task", "quote", "contract", "product", "report", "dashboard"]),
    ("hubspot", "HubSpot", ("portal_id", "HubSpot portal ID"), &["contact", "company", "deal", "ticket", "pipeline", "owner", "note", "email", "call", "meeting", "form", "list"]),
    ("zendesk", "Zendesk", ("subdomain", "Zendesk subdomain"), &["ticket", "user", "organization", "group", "macro", "view", "trigger", "article", "comment", "satisfaction_rating", "tag", "brand"]),
    ("intercom", "Intercom", ("workspace_id", "Intercom workspace"), &["conversation", "contact", "company", "article", "segment", "tag", "note", "team", "admin", "ticket", "collection", "data_attribute"]),
    ("stripe", "Stripe", ("account", "Connected account ID, if acting for one"), &["customer", "charge", "payment_intent", "invoice", "subscription", "product", "price", "coupon", "payout", "dispute", "balance_transaction", "payment_method"]),
    ("paypal", "PayPal", ("merchant_id", "PayPal merchant ID"), &["order", "payment", "invoice", "subscription", "plan", "product", "payout", "dispute", "webhook", "transaction", "tracker", "partner_referral"]),
    ("quickbooks", "QuickBooks", ("realm_id", "QuickBooks company ID"), &["customer", "invoice", "bill", "vendor", "account", "payment", "estimate", "item", "employee", "journal_entry", "purchase", "class"]),
    ("xero", "Xero", ("tenant_id", "Xero organisation ID"), &["contact", "invoice", "bank_transaction", "account", "payment", "credit_note", "item", "quote", "purchase_order", "employee", "tax_rate", "tracking_category"]),
    ("shopify", "Shopify", ("shop", "Shop domain"), &["product", "order", "customer", "collection", "inventory_level", "fulfillment", "discount", "draft_order", "location", "gift_card", "metafield", "theme"]),
    ("s3", "Amazon S3", ("bucket", "Name of the S3 bucket"), &["bucket", "object", "bucket_policy", "lifecycle_rule", "multipart_upload", "access_point", "object_tag", "replication_rule", "cors_rule", "inventory_configuration", "notification", "object_lock"]),
    ("gcs", "Google Cloud Storage", ("bucket", "Name of the Cloud Storage bucket"), &["bucket", "object", "hmac_key", "notification", "acl", "retention_policy", "lifecycle_rule", "managed_folder", "anywhere_cache", "label", "iam_policy", "service_account"]),
    ("dropbox", "Dropbox", ("path", "Dropbox path"), &["file", "folder", "shared_link", "file_request", "paper_doc", "member", "team_folder", "revision", "tag", "lock", "property_template", "comment"]),
    ("gdrive", "Google Drive", ("drive_id", "Shared drive ID"), &["file", "folder", "permission", "comment", "reply", "revision", "shared_drive", "label", "change", "shortcut", "app_property", "about"]),
    ("calendar", "Google Calendar", ("calendar_id", "Calendar ID; primary for the user's own"), &["event", "calendar", "acl_rule", "setting", "color", "freebusy_query", "event_instance", "working_location", "out_of_office", "focus_time", "calendar_list_entry", "channel"]),
    ("gmail", "Gmail", ("user_id", "Mailbox, me for the user's own"), &["message", "thread", "draft", "label", "filter", "forwarding_address", "send_as_alias", "attachment", "history", "delegate", "vacation_setting", "smime_info"]),
    ("outlook", "Outlook", ("mailbox", "Mailbox address"), &["message", "mail_folder", "event", "contact", "calendar", "rule", "category", "attachment", "task", "focused_inbox_override", "signature", "room"]),
    ("postgres", "PostgreSQL", ("database", "Database name"), &["table", "schema", "index", "view", "role", "extension", "function", "trigger", "sequence", "publication", "subscription", "tablespace"]),
    ("mysql", "MySQL", ("database", "Database name"), &["table", "index", "view", "user", "procedure", "event", "trigger", "grant", "partition", "column", "foreign_key", "variable"]),
    ("mongodb", "MongoDB", ("database", "Database name"), &["collection", "document", "index", "view", "user", "role", "aggregation_pipeline", "change_stream", "shard", "search_index", "validator", "cluster"]),
    ("redis", "Redis", ("instance", "Redis instance"), &["key", "stream", "hash", "list", "set", "sorted_set", "channel", "module", "client", "acl_user", "script", "config"]),
    ("snowflake", "Snowflake", ("warehouse", "Warehouse to run in"), &["database", "schema", "table", "warehouse", "stage", "pipe", "stream", "task", "role", "user", "share", "query_history"]),
    ("bigquery", "BigQuery", ("project", "Google Cloud project"), &["dataset", "table", "job", "routine", "model", "view", "reservation", "transfer_config", "row_access_policy", "connection", "capacity_commitment", "data_policy"]),
    ("kubernetes", "Kubernetes", ("namespace", "Namespace; default if omitted"), &["pod", "deployment", "service", "config_map", "secret", "ingress", "node", "namespace", "job", "cron_job", "stateful_set", "persistent_volume_claim"]),
    ("docker", "Docker", ("host", "Docker host"), &["container", "image", "volume", "network", "service", "secret", "config", "node", "plugin", "swarm", "stack", "context"]),
    ("ec2", "Amazon EC2", ("region", "AWS region"), &["instance", "volume", "snapshot", "security_group", "key_pair", "image", "elastic_ip", "vpc", "subnet", "launch_template", "placement_group", "network_interface"]),
    ("rds", "Amazon RDS", ("region", "AWS region"), &["db_instance", "db_cluster", "parameter_group", "subnet_group", "option_group", "event_subscription", "proxy", "reserved_instance", "global_cluster", "export_task", "blue_green_deployment", "integration"]),
    ("terraform", "Terraform Cloud", ("organization", "Terraform Cloud organization"), &["workspace", "run", "plan", "apply", "variable", "state_version", "policy_set", "module", "provider", "team", "agent_pool", "project"]),
    ("datadog", "Datadog", ("site", "Datadog site"), &["monitor", "dashboard", "metric", "log_index", "incident", "slo", "synthetic_test", "downtime", "event", "notebook", "service_definition", "api_key"]),
    ("pagerduty", "PagerDuty", ("subdomain", "PagerDuty subdomain"), &["incident", "service", "schedule", "escalation_policy", "user", "team", "maintenance_window", "priority", "response_play", "business_service", "extension", "vendor"]),
    ("sentry", "Sentry", ("organization", "Sentry organization slug"), &["project", "release", "team", "member", "alert_rule", "dsn_key", "environment", "event", "deploy", "dashboard", "monitor", "integration"]),
    ("grafana", "Grafana", ("org_id", "Grafana organization"), &["dashboard", "datasource", "folder", "alert_rule", "contact_point", "annotation", "team", "user", "playlist", "snapshot", "library_panel", "service_account"]),
    ("notion", "Notion", ("workspace", "Notion workspace"), &["page", "database", "block", "comment", "user", "property", "template", "view", "relation", "file", "mention", "integration"]),
    ("confluence", "Confluence", ("space_key", "Confluence space key"), &["page", "space", "blog_post", "comment", "attachment", "label", "template", "whiteboard", "task", "content_property", "restriction", "version"]),
    ("asana", "Asana", ("workspace_gid", "Asana workspace"), &["task", "project", "section", "portfolio", "goal", "tag", "story", "team", "user", "custom_field", "status_update", "webhook"]),
    ("trello", "Trello", ("board_id", "Trello board"), &["board", "card", "list", "checklist", "label", "member", "action", "attachment", "organization", "custom_field", "power_up", "webhook"]),
    ("twilio", "Twilio", ("account_sid", "Twilio account SID"), &["call", "recording", "phone_number", "conference", "queue", "verification", "conversation", "messaging_service", "short_code", "address", "usage_record", "transcription"]),
    ("sendgrid", "SendGrid", ("subuser", "SendGrid subuser"), &["contact", "list", "template", "sender", "suppression", "segment", "domain_authentication", "api_key", "ip_pool", "webhook", "stat", "unsubscribe_group"]),
    ("zoom", "Zoom", ("user_id", "Zoom user ID or email"), &["meeting", "webinar", "recording", "user", "registrant", "room", "phone_call", "chat_channel", "report", "group", "poll", "whiteboard"]),
    ("figma", "Figma", ("file_key", "Figma file key"), &["file", "comment", "component", "style", "project", "team", "version", "image", "variable", "dev_resource", "webhook", "library_analytic"]),
    ("okta", "Okta", ("org_url", "Okta org URL"), &["user", "group", "application", "policy", "factor", "session", "identity_provider", "authorization_server", "network_zone", "device", "role", "event_hook"]),
    ("auth0", "Auth0", ("tenant", "Auth0 tenant domain"), &["user", "client", "connection", "role", "organization", "action", "rule", "log_stream", "resource_server", "grant", "branding_theme", "custom_domain"]),
    ("cloudflare", "Cloudflare", ("zone_id", "Cloudflare zone"), &["zone", "dns_record", "page_rule", "worker", "kv_namespace", "r2_bucket", "certificate", "load_balancer", "access_application", "tunnel", "waf_package", "rate_limit"]),
    ("vercel", "Vercel", ("team_id", "Vercel team"), &["project", "deployment", "domain", "environment_variable", "alias", "edge_config", "log_drain", "secret", "integration", "check", "firewall_config", "webhook"]),
];

/// The verbs every service has for every object.
#[rustfmt::skip]
const VERBS: &[Verb] = &[
    ("list_{os}", "List {os} in {s}. Results are paginated; pass the cursor from the previous page to continue.", &[("limit", "Maximum number of {os} to return, 1 to 100"), ("cursor", "Opaque cursor returned by the previous call")]),
    ("get_{o}", "Get one {o} from {s} by its ID, with all of its fields.", &[("{o}_id", "ID of the {o}")]),
    ("create_{o}", "Create a new {o} in {s} and return it.", &[("name", "Name of the new {o}"), ("description", "Optional free-text description")]),
    ("update_{o}", "Update fields of an existing {o} in {s}; fields left out keep their value.", &[("{o}_id", "ID of the {o} to change"), ("fields", "Fields to set, as a JSON object")]),
    ("delete_{o}", "Permanently delete a {o} from {s}. This cannot be undone.", &[("{o}_id", "ID of the {o} to delete")]),
    ("search_{os}", "Search {os} in {s} by free-text query and filters.", &[("query", "Text to search for"), ("filters", "Field filters such as status or owner"), ("limit", "Maximum number of results")]),
    ("archive_{o}", "Archive a {o} so it is hidden from default lists but kept in {s}.", &[("{o}_id", "ID of the {o} to archive")]),
    ("export_{os}", "Export {os} from {s} as CSV or JSON for a date range.", &[("format", "csv or json"), ("start_date", "Start of the range (ISO 8601 date)"), ("end_date", "End of the range (ISO 8601 date)")]),
];

/// Verbs that only the first services get, to bring the catalog to its size.
#[rustfmt::skip]
const MORE_VERBS: &[Verb] = &[
    ("count_{os}", "Count the {os} in {s} that match the filters.", &[("filters", "Field filters such as status or owner")]),
    ("restore_{o}", "Restore an archived {o} in {s}.", &[("{o}_id", "ID of the archived {o}")]),
];

fn plural(object: &str) -> String {
    if let Some(stem) = object.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'o', 'u'])
    {
        format!("{stem}ies")
    } else if object.ends_with(['s', 'x']) || object.ends_with("ch") || object.ends_with("sh") {
        format!("{object}es")
    } else {
        format!("{object}s")
    }
}

/// A hand-written tool: name, title, description, parameters.
type Written = (&'static str, Option<&'static str>, &'static str, Params);

/// The tools the queries are about, each with the query a user would type. Descriptions are
/// written the way vendors' MCP servers word them; the queries avoid the tools' names.
#[rustfmt::skip]
const TARGETS: &[(&str, Written)] = &[
    ("open a bug report in the issue tracker", ("jira__create_issue", Some("Create Jira issue"), "Create an issue in a Jira project: a bug, task or story. Returns the new issue key.", &[("project_key", "Key of the Jira project, e.g. OPS"), ("summary", "One-line summary"), ("issue_type", "Bug, Task, Story or Epic"), ("description", "Details; for a bug, the steps to reproduce"), ("priority", "Highest, High, Medium, Low")])),
    ("how much did customer pay last month", ("stripe__list_charges", Some("List charges"), "List charges, the payments customers made, newest first. Filter by customer and by creation date to total what was paid in a period.", &[("customer", "Only charges of this customer ID"), ("created_gte", "Only charges created on or after this time, e.g. the first day of last month"), ("created_lte", "Only charges created on or before this time"), ("limit", "Page size, 1 to 100")])),
    ("restart the crashed pod", ("kubernetes__restart_pod", Some("Restart pod"), "Restart a pod by deleting it so that its controller starts a fresh one. Use for pods stuck in CrashLoopBackOff.", &[("namespace", "Namespace; default if omitted"), ("pod", "Name of the pod")])),
    ("send a message to the team channel", ("teams__send_channel_message", Some("Send channel message"), "Send a message to a channel of a Microsoft Teams team, optionally as a reply in a thread.", &[("team_id", "ID of the team"), ("channel_id", "ID of the channel"), ("content", "Message body, HTML or plain text"), ("reply_to_id", "Message to reply to")])),
    ("find the repositories I starred", ("github__list_starred_repositories", Some("List starred repositories"), "List the repositories the authenticated user has starred, most recently starred first.", &[("sort", "created or updated"), ("per_page", "Results per page")])),
    ("which meetings are on my calendar tomorrow", ("calendar__list_events", Some("List calendar events"), "List events on a Google Calendar between two times (the user's meetings and appointments for a day or a week), expanded into single occurrences.", &[("calendar_id", "Calendar ID; primary for the user's own"), ("time_min", "Start of the window (RFC 3339)"), ("time_max", "End of the window (RFC 3339)"), ("q", "Free-text filter")])),
    ("who is on call right now", ("pagerduty__list_oncalls", Some("List on-calls"), "List on-call entries: which user is on call for each escalation policy and schedule at a given time.", &[("since", "Start of the window; now if omitted"), ("until", "End of the window"), ("schedule_ids", "Only these schedules")])),
    ("refund the customer's last payment", ("stripe__create_refund", Some("Create refund"), "Refund a charge or payment intent, in full or for part of the amount. The money goes back to the original payment method.", &[("charge", "ID of the charge to refund"), ("payment_intent", "ID of the payment intent to refund"), ("amount", "Amount in cents; the whole charge if omitted"), ("reason", "fraudulent or requested_by_customer")])),
    ("take a backup of the production database", ("rds__create_db_snapshot", Some("Create DB snapshot"), "Create a manual snapshot (a point-in-time backup) of an RDS database instance.", &[("db_instance_identifier", "The database instance to snapshot"), ("db_snapshot_identifier", "Name for the new snapshot")])),
    ("show me the errors from last night", ("sentry__list_issues", Some("List issues"), "List issues in a Sentry project: errors and exceptions your app raised, grouped by cause, most frequent first, over a period such as the last 24 hours.", &[("project", "Project slug"), ("stats_period", "24h, 14d, ..."), ("query", "Sentry search, e.g. is:unresolved")])),
    ("save the report file into our S3 bucket", ("s3__put_object", Some("Put object"), "Upload a file as an object to an S3 bucket under the given key.", &[("bucket", "Name of the S3 bucket"), ("key", "Object key, e.g. reports/2024.pdf"), ("body", "File content, base64"), ("content_type", "MIME type")])),
    ("reset a user's password", ("okta__reset_password", Some("Reset password"), "Start a password reset for an Okta user: the user gets a reset link by email, or the link is returned.", &[("user_id", "Okta user ID or login"), ("send_email", "Email the link to the user")])),
    ("count the rows in the orders table of our postgres database", ("postgres__run_query", Some("Run SQL query"), "Run a read-only SQL query against the PostgreSQL database and return the rows: count, filter or join the data of any table.", &[("database", "Database name"), ("sql", "SELECT statement to run")])),
    ("scale the web deployment to 5 replicas", ("kubernetes__scale_deployment", Some("Scale deployment"), "Set the number of replicas of a deployment; Kubernetes adds or removes pods to match.", &[("namespace", "Namespace; default if omitted"), ("name", "Deployment name"), ("replicas", "Desired number of pods")])),
    ("block the malicious IP address at the edge", ("cloudflare__create_firewall_rule", Some("Create firewall rule"), "Create a firewall rule for a zone that blocks, challenges or allows requests matching an expression, such as a client IP address or a country.", &[("zone_id", "Cloudflare zone"), ("expression", "Filter, e.g. ip.src eq 203.0.113.7"), ("action", "block, challenge, js_challenge or allow")])),
    ("send an SMS to the customer saying their order shipped", ("twilio__send_sms", Some("Send SMS"), "Send an SMS text message from one of your Twilio numbers to a phone number.", &[("to", "Recipient phone number, E.164"), ("from", "Your Twilio number"), ("body", "Text of the message, up to 1600 characters")])),
    ("send a marketing email to the newsletter subscribers", ("sendgrid__send_single_send", Some("Send a Single Send"), "Send or schedule a Single Send: one marketing email to the contacts of one or more lists or segments.", &[("single_send_id", "The Single Send to send"), ("send_at", "now, or a time to schedule it")])),
    ("add a new contact to the CRM", ("hubspot__create_contact", Some("Create contact"), "Create a contact record in HubSpot CRM with email, name, phone and any other properties.", &[("email", "Contact email"), ("firstname", "First name"), ("lastname", "Last name"), ("properties", "Other contact properties")])),
    ("share the design file with a teammate", ("gdrive__share_file", Some("Share file"), "Share a Google Drive file or folder with a person or group, as viewer, commenter or editor.", &[("file_id", "ID of the file or folder"), ("email", "Email of the person or group"), ("role", "reader, commenter or writer")])),
    ("check the CPU usage of the servers over the last hour", ("datadog__query_metrics", Some("Query metrics"), "Query timeseries points of metrics, such as system.cpu.user by host, over a time range.", &[("query", "Metric query, e.g. avg:system.cpu.user{*} by {host}"), ("from", "Start, seconds since the epoch"), ("to", "End, seconds since the epoch")])),
    ("merge the pull request once it is approved", ("github__merge_pull_request", Some("Merge pull request"), "Merge a pull request into its base branch using merge, squash or rebase.", &[("repo", "Repository as owner/name"), ("pull_number", "Number of the pull request"), ("merge_method", "merge, squash or rebase")])),
    ("schedule a video call with the client on friday", ("zoom__create_meeting", Some("Create meeting"), "Schedule a Zoom meeting for a user: topic, start time, duration and settings; returns the join URL for the video call.", &[("user_id", "Zoom user ID or email"), ("topic", "Meeting topic"), ("start_time", "Start time (ISO 8601)"), ("duration", "Length in minutes")])),
    ("roll back the bad deploy", ("kubernetes__rollback_deployment", Some("Roll back deployment"), "Roll a deployment back to its previous revision, or to a given one.", &[("namespace", "Namespace; default if omitted"), ("name", "Deployment name"), ("to_revision", "Revision number; the previous one if omitted")])),
    ("invite a new hire to the workspace", ("slack__invite_user", Some("Invite user"), "Invite a person by email to join the Slack workspace, optionally into some channels.", &[("email", "Email address of the person"), ("channel_ids", "Channels to add them to")])),
    ("mark the invoice as paid", ("xero__create_payment", Some("Create payment"), "Record a payment against an invoice; the invoice is marked paid when the payment covers its amount due.", &[("invoice_id", "ID of the invoice"), ("account_id", "Bank account the money went into"), ("amount", "Amount paid"), ("date", "Date of the payment")])),
];

/// Near misses: real-looking tools that share the queries' words but are not what was asked.
#[rustfmt::skip]
const DISTRACTORS: &[Written] = &[
    ("sentry__list_issue_events", None, "List the events (occurrences) reported for one Sentry issue.", &[("issue_id", "ID of the issue")]),
    ("zendesk__open_ticket", None, "Open a support ticket on behalf of a customer to report a problem.", &[("subject", "Ticket subject"), ("comment", "First comment")]),
    ("github__create_issue_comment", None, "Add a comment to an issue or pull request.", &[("repo", "Repository as owner/name"), ("issue_number", "Issue number"), ("body", "Comment text")]),
    ("stripe__list_customers", None, "List customers, newest first; filter by email or creation date.", &[("email", "Customer email"), ("created", "Creation date filter")]),
    ("quickbooks__get_profit_and_loss", None, "Profit and loss report for a month, a quarter or a custom date range.", &[("start_date", "First day"), ("end_date", "Last day")]),
    ("kubernetes__get_pod_logs", None, "Read the logs of a pod's container, including the previous container after a crash.", &[("pod", "Name of the pod"), ("previous", "Logs of the previous, crashed container")]),
    ("kubernetes__restart_deployment", None, "Trigger a rolling restart of every pod of a deployment.", &[("name", "Deployment name")]),
    ("docker__restart_container", None, "Restart a running or stopped container.", &[("container", "Container ID or name")]),
    ("slack__post_message", None, "Post a message to a Slack channel or a thread.", &[("channel", "Channel ID or name"), ("text", "Message text")]),
    ("discord__send_message", None, "Send a message to a channel of a Discord server.", &[("channel_id", "Channel"), ("content", "Message")]),
    ("github__star_repository", None, "Star a repository for the authenticated user.", &[("repo", "Repository as owner/name")]),
    ("zoom__list_meetings", None, "List the scheduled meetings of a Zoom user.", &[("user_id", "Zoom user ID or email"), ("type", "scheduled, live or upcoming")]),
    ("pagerduty__list_schedules", None, "List on-call schedules and their layers.", &[("query", "Filter by name")]),
    ("paypal__refund_captured_payment", None, "Refund a captured PayPal payment, in full or in part.", &[("capture_id", "ID of the captured payment"), ("amount", "Amount to refund")]),
    ("postgres__dump_database", None, "Write a SQL dump of a PostgreSQL database to a file for migration.", &[("database", "Database name"), ("path", "Where to write the dump")]),
    ("datadog__search_logs", None, "Search logs with a query such as status:error service:web over a time range.", &[("query", "Log query"), ("from", "Start"), ("to", "End")]),
    ("gcs__upload_object", None, "Upload an object to a Cloud Storage bucket.", &[("bucket", "Name of the Cloud Storage bucket"), ("name", "Object name"), ("media", "Content")]),
    ("auth0__create_password_change_ticket", None, "Create a ticket link that lets a user change their password.", &[("user_id", "Auth0 user ID")]),
    ("postgres__describe_table", None, "Show the columns, types and indexes of a table.", &[("table", "Table name")]),
    ("shopify__count_orders", None, "Count the orders of a shop, optionally by status.", &[("status", "open, closed, cancelled or any")]),
    ("ec2__modify_instance_count", None, "Change the number of instances of an Auto Scaling group.", &[("desired_capacity", "Number of instances")]),
    ("cloudflare__list_ip_access_rules", None, "List the IP access rules of a zone.", &[("zone_id", "Cloudflare zone")]),
    ("shopify__create_fulfillment", None, "Fulfill order items and mark them shipped, with a tracking number; the customer is notified.", &[("order_id", "Order ID"), ("tracking_number", "Carrier tracking number")]),
    ("gmail__send_message", None, "Send an email message from the user's mailbox.", &[("to", "Recipients"), ("subject", "Subject"), ("body", "Body")]),
    ("salesforce__create_contact", None, "Create a Salesforce contact under an account.", &[("account_id", "Account"), ("email", "Email"), ("last_name", "Last name")]),
    ("dropbox__create_shared_link", None, "Create a shared link to a Dropbox file or folder.", &[("path", "Dropbox path")]),
    ("grafana__query_datasource", None, "Run a query against a Grafana data source over a time range.", &[("datasource_uid", "Data source"), ("expr", "Query expression")]),
    ("gitlab__accept_merge_request", None, "Merge (accept) a GitLab merge request once its pipeline passes.", &[("project_id", "Project"), ("merge_request_iid", "Merge request")]),
    ("github__create_pull_request_review", None, "Review a pull request: approve it, comment or request changes.", &[("repo", "Repository as owner/name"), ("pull_number", "Pull request"), ("event", "APPROVE, REQUEST_CHANGES or COMMENT")]),
    ("calendar__create_event", None, "Create an event on a Google Calendar, optionally with a Google Meet video conference.", &[("summary", "Title"), ("start", "Start time"), ("end", "End time")]),
    ("vercel__rollback_project", None, "Point a Vercel project's production domain back at an earlier deployment.", &[("project_id", "Project"), ("deployment_id", "Earlier deployment")]),
    ("notion__invite_member", None, "Invite a member or guest to a Notion workspace.", &[("email", "Email")]),
    ("stripe__pay_invoice", None, "Pay an invoice now by charging the customer's default payment method.", &[("invoice", "Invoice ID")]),
    ("quickbooks__receive_payment", None, "Record a customer payment received against one or more QuickBooks invoices.", &[("customer_ref", "Customer"), ("amount", "Amount")]),
];

const CATALOG_SIZE: usize = 5_000;

/// The catalog, the same on every run: generated tools with the hand-written ones spread
/// among them (a hand-written tool replaces a generated one of the same name).
fn catalog() -> &'static [Tool] {
    static CATALOG: OnceLock<Vec<Tool>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let written: Vec<&Written> = TARGETS.iter().map(|(_, t)| t).chain(DISTRACTORS).collect();
        let mut generated = Vec::new();
        'fill: for verbs in [VERBS, MORE_VERBS] {
            for &(prefix, service, scope, objects) in SERVICES {
                for object in objects {
                    for &(name, description, params) in verbs {
                        let fill = |text: &str| {
                            text.replace("{os}", &plural(object).replace('_', " "))
                                .replace("{o}_id", &format!("{object}_id"))
                                .replace("{o}", &object.replace('_', " "))
                                .replace("{s}", service)
                        };
                        let tool_name = format!(
                            "{prefix}__{}",
                            name.replace("{os}", &plural(object)).replace("{o}", object)
                        );
                        if written.iter().any(|w| w.0 == tool_name) {
                            continue;
                        }
                        let mut all = vec![(scope.0.to_string(), scope.1.to_string())];
                        all.extend(params.iter().map(|(n, d)| (fill(n), fill(d))));
                        let pairs: Vec<(&str, &str)> =
                            all.iter().map(|(n, d)| (n.as_str(), d.as_str())).collect();
                        generated.push(Tool {
                            name: tool_name,
                            title: None,
                            description: fill(description),
                            schema: schema(&pairs),
                        });
                        if generated.len() + written.len() == CATALOG_SIZE {
                            break 'fill;
                        }
                    }
                }
            }
        }
        // Spread the hand-written tools through the catalog at fixed, uneven places.
        let mut tools = generated;
        for (i, &&(name, title, description, params)) in written.iter().enumerate() {
            let at = (i * 2_711 + 97) % (tools.len() + 1);
            tools.insert(
                at,
                Tool {
                    name: name.to_string(),
                    title: title.map(str::to_string),
                    description: description.to_string(),
                    schema: schema(params),
                },
            );
        }
        tools
    })
}

fn index() -> &'static SearchIndex {
    static INDEX: OnceLock<SearchIndex> = OnceLock::new();
    INDEX.get_or_init(|| SearchIndex::build(catalog().iter().map(Tool::doc)))
}

fn position(name: &str) -> usize {
    catalog()
        .iter()
        .position(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the test catalog"))
}

fn names(hits: &[Hit]) -> Vec<&'static str> {
    hits.iter()
        .map(|h| catalog()[h.doc].name.as_str())
        .collect()
}

/// The queries whose expected tool is not in `index`'s top 3, with the top 3 they got.
fn misses(index: &SearchIndex) -> Vec<String> {
    TARGETS
        .iter()
        .filter_map(|&(query, (expected, ..))| {
            let hits = index.search(query, 3, |_| true);
            let top = names(&hits);
            (!top.contains(&expected))
                .then(|| format!("query {query:?}: expected {expected}, top 3 were {top:?}"))
        })
        .collect()
}

#[test]
fn catalog_is_five_thousand_distinct_tools() {
    let tools = catalog();
    assert_eq!(tools.len(), CATALOG_SIZE);
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CATALOG_SIZE, "tool names repeat");
    assert!(TARGETS.len() >= 20);
    assert_eq!(index().len(), CATALOG_SIZE);
}

#[test]
fn every_query_finds_its_tool_in_the_top_three() {
    let misses = misses(index());
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

/// The catalog is hard enough that names alone do not do: an index that sees only tool
/// names misses several queries that the full index answers.
#[test]
fn names_alone_miss_queries_that_descriptions_answer() {
    let empty = Map::new();
    let names_only = SearchIndex::build(catalog().iter().map(|t| Doc {
        name: &t.name,
        title: None,
        description: None,
        input_schema: &empty,
    }));
    let missed = misses(&names_only).len();
    assert!(
        missed >= 5,
        "a names-only index missed only {missed} of {} queries; the catalog is too easy",
        TARGETS.len()
    );
}

#[test]
fn a_hidden_tool_never_appears_and_the_rest_keep_their_order() {
    for &(query, (expected, ..)) in TARGETS {
        let hidden = position(expected);
        let all = index().search(query, 11, |_| true);
        assert!(all.iter().any(|h| h.doc == hidden), "query {query:?}");
        let filtered = index().search(query, 10, |doc| doc != hidden);
        // Some queries match fewer than 11 tools: then all of the others.
        let others: Vec<Hit> = all
            .into_iter()
            .filter(|h| h.doc != hidden)
            .take(10)
            .collect();
        assert_eq!(
            names(&filtered),
            names(&others),
            "query {query:?} with {expected} hidden"
        );
        assert_eq!(filtered, others, "query {query:?}: scores changed");
    }
}

#[test]
fn the_filter_is_applied_before_the_cut() {
    // Only tools of one service are visible: the results are still `limit` long, all of
    // that service, although other services' tools score higher.
    let github = |doc: usize| catalog()[doc].name.starts_with("github__");
    let all = index().search("create a new issue", 5, |_| true);
    assert!(
        all.iter().any(|h| !github(h.doc)),
        "test needs other services on top"
    );
    let hits = index().search("create a new issue", 5, github);
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| github(h.doc)), "{:?}", names(&hits));
    let nothing = index().search("create a new issue", 5, |_| false);
    assert!(nothing.is_empty());
}

#[test]
fn visibility_is_asked_only_until_the_limit_is_found() {
    // Asking is a policy decision per tool: the best matches are asked first, and asking
    // stops once `limit` visible ones are found.
    let asked = std::cell::Cell::new(0);
    let every = index().search("create a new issue", 100, |_| true);
    assert!(every.len() > 20, "test needs many matches: {}", every.len());
    let hidden = every[1].doc;
    let hits = index().search("create a new issue", 3, |doc| {
        asked.set(asked.get() + 1);
        doc != hidden
    });
    assert_eq!(
        asked.get(),
        4,
        "the three best visible, and the hidden one between them"
    );
    let want: Vec<usize> = every
        .iter()
        .map(|h| h.doc)
        .filter(|d| *d != hidden)
        .take(3)
        .collect();
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), want);
}

#[test]
fn limit_is_respected_and_results_are_best_first() {
    for limit in [0, 1, 3, 50] {
        let hits = index().search("list customer invoices", limit, |_| true);
        assert_eq!(hits.len(), limit);
        assert!(
            hits.windows(2)
                .all(|w| w[0].score > w[1].score
                    || (w[0].score == w[1].score && w[0].doc < w[1].doc)),
            "not in order: {hits:?}"
        );
    }
    // Fewer matches than the limit: all of them, and nothing that shares no term.
    let hits = index().search("fraudulent", 100, |_| true);
    assert_eq!(names(&hits), ["stripe__create_refund"]);
}

#[test]
fn unmatched_and_empty_queries_return_nothing() {
    for query in ["", "   ", "?!,.", "the of and to", "zebra xylophone"] {
        assert!(
            index().search(query, 10, |_| true).is_empty(),
            "query {query:?}"
        );
    }
}

#[test]
fn an_empty_index_returns_nothing() {
    let index = SearchIndex::build(std::iter::empty());
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert!(index.search("list repositories", 10, |_| true).is_empty());
    assert!(index.search("", 10, |_| true).is_empty());
}

#[test]
fn tools_without_text_or_parameters_are_indexed_by_name() {
    let odd = schema(&[]);
    let mut not_object = Map::new();
    not_object.insert("properties".into(), json!(["not", "an", "object"]));
    let index = SearchIndex::build([
        Doc {
            name: "",
            title: None,
            description: None,
            input_schema: &odd,
        },
        Doc {
            name: "ping",
            title: Some(""),
            description: Some(""),
            input_schema: &not_object,
        },
    ]);
    assert_eq!(index.len(), 2);
    let hits = index.search("ping", 10, |_| true);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [1]);
    assert!(hits[0].score > 0.0 && hits[0].score.is_finite(), "{hits:?}");
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let stemmer = Stemmer::create(Algorithm::English);
    words(text, |word| out.push(stemmer.stem(word).into_owned()));
    out
}

#[test]
fn identifiers_are_split_into_words() {
    let cases: &[(&str, &[&str])] = &[
        ("list_repos", &["list", "repo"]),
        ("listRepos", &["list", "repo"]),
        ("list-repos", &["list", "repo"]),
        ("github__listRepos", &["github", "list", "repo"]),
        ("HTTPServer", &["http", "server"]),
        ("getHTTPResponseCode", &["get", "http", "respons", "code"]),
        ("s3__putObject", &["s3", "put", "object"]),
        ("getV2Items", &["get", "v2", "item"]),
        ("base64Encode", &["base64", "encod"]),
        ("ipv4_address", &["ipv4", "address"]),
        ("HTTP 404 error", &["http", "404", "error"]),
        ("Who is on-call?", &["call"]),
        ("user's e-mail", &["user", "mail"]),
        ("Überweisung_erstellen", &["überweisung", "erstellen"]),
    ];
    for (text, expected) in cases {
        assert_eq!(tokens(text), *expected, "tokens of {text:?}");
    }
}

#[test]
fn word_forms_match_through_stemming() {
    let empty = Map::new();
    let index = SearchIndex::build([
        Doc {
            name: "list_repository",
            title: None,
            description: None,
            input_schema: &empty,
        },
        Doc {
            name: "list_branches",
            title: None,
            description: None,
            input_schema: &empty,
        },
    ]);
    let hits = index.search("repositories", 10, |_| true);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [0]);
    let hits = index.search("branch", 10, |_| true);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [1]);
}

#[test]
fn a_word_in_the_name_outweighs_the_same_word_in_a_parameter_description() {
    let empty = Map::new();
    let with_param = schema(&[("id", "The invoice to void")]);
    let index = SearchIndex::build([
        Doc {
            name: "void_payment",
            title: None,
            description: Some("Cancel it."),
            input_schema: &with_param,
        },
        Doc {
            name: "void_invoice",
            title: None,
            description: Some("Cancel it."),
            input_schema: &empty,
        },
    ]);
    let hits = index.search("invoice", 10, |_| true);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [1, 0]);
    assert!(hits[0].score > hits[1].score);
}

#[test]
fn equal_scores_keep_document_order() {
    let empty = Map::new();
    let same = Doc {
        name: "send_email",
        title: None,
        description: Some("Send an email."),
        input_schema: &empty,
    };
    let index = SearchIndex::build([same, same, same]);
    let hits = index.search("email", 10, |_| true);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(hits.iter().all(|h| h.score == hits[0].score));
    let hits = index.search("email", 2, |doc| doc != 0);
    assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [1, 2]);
}

#[test]
#[ignore = "timing, for a person to read; run with --release -- --ignored --nocapture"]
fn timing_of_five_thousand_tools() {
    let tools = catalog();
    let started = std::time::Instant::now();
    let index = SearchIndex::build(tools.iter().map(Tool::doc));
    let built = started.elapsed();
    let started = std::time::Instant::now();
    let rounds = 100;
    for _ in 0..rounds {
        for (query, _) in TARGETS {
            std::hint::black_box(index.search(query, 10, |_| true));
        }
    }
    let per_query = started.elapsed() / (rounds * TARGETS.len()) as u32;
    println!(
        "{} tools: built in {built:?}, {per_query:?} per query",
        index.len()
    );
}
