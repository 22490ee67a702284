//! GraphQL through real sockets: a small GraphQL server (async-graphql)
//! started by the test, behind REST → GraphQL routes (variables typed from
//! path, query and body; errors mapped to statuses) and behind a proxied
//! GraphQL route whose queries are limited in depth, aliases and cost.

use async_graphql::{EmptyMutation, EmptySubscription, ErrorExtensions, Object, Schema, ID};
use http::Request;
use http_body_util::Full;
use serde_json::json;

use crate::support::*;

struct User {
    id: String,
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    async fn name(&self) -> String {
        format!("user-{}", self.id)
    }
    async fn friends(&self) -> Vec<User> {
        vec![User { id: format!("{}f", self.id) }]
    }
}

struct Query;

#[Object]
impl Query {
    async fn user(&self, id: ID) -> async_graphql::Result<User> {
        match id.as_str() {
            "404" => Err(async_graphql::Error::new("no such user").extend_with(|_, e| e.set("code", "NOT_FOUND"))),
            "500" => Err(async_graphql::Error::new("database down")),
            _ => Ok(User { id: id.0 }),
        }
    }
    async fn users(&self, first: i32, active: bool) -> Vec<User> {
        (0..first).map(|i| User { id: format!("{i}{}", if active { "a" } else { "i" }) }).collect()
    }
    async fn by_ids(&self, ids: Vec<ID>) -> Vec<User> {
        ids.into_iter().map(|id| User { id: id.0 }).collect()
    }
    async fn broken(&self) -> async_graphql::Result<Option<String>> {
        Err("this field always fails".into())
    }
}

type Api = Schema<Query, EmptyMutation, EmptySubscription>;

/// The GraphQL server: POST /graphql with a JSON request.
async fn graphql_server() -> Peer {
    let schema: Api = Schema::new(Query, EmptyMutation, EmptySubscription);
    peer(move |seen| {
        let schema = schema.clone();
        async move {
            if seen.uri.path() != "/graphql" {
                return answer(404, "text/plain", "not here");
            }
            let request: async_graphql::Request = match serde_json::from_slice(&seen.body) {
                Ok(r) => r,
                Err(e) => return answer(400, "text/plain", e.to_string()),
            };
            let response = schema.execute(request).await;
            answer(200, "application/json", serde_json::to_vec(&response).unwrap())
        }
    })
    .await
}

async fn graphql_gateway(server: &Peer) -> meridian_region::gateway::RunningGateway {
    let doc = format!(
        r#"
[upstreams.gql]
targets = [{{ address = "{}" }}]

[[routes]]
name = "user"
upstream = "gql"
methods = ["GET"]
path_template = "/users/{{id}}"
rewrite = "/graphql"
[routes.graphql]
query = "query U($id: ID!) {{ user(id: $id) {{ id name }} }}"
variables = {{ id = "$(path.id)" }}

[[routes]]
name = "users"
upstream = "gql"
methods = ["GET"]
path_exact = "/users"
rewrite = "/graphql"
[routes.graphql]
query = "query L($first: Int!, $active: Boolean!) {{ users(first: $first, active: $active) {{ id }} }}"
variables = {{ first = "$(query.first)", active = "$(query.active)" }}

[[routes]]
name = "lookup"
upstream = "gql"
methods = ["POST"]
path_exact = "/lookup"
rewrite = "/graphql"
[routes.graphql]
query = "query B($ids: [ID!]!) {{ byIds(ids: $ids) {{ name }} }}"
variables = {{ ids = "$(body.ids)" }}

[[routes]]
name = "partial"
upstream = "gql"
methods = ["GET"]
path_exact = "/partial"
rewrite = "/graphql"
[routes.graphql]
query = "{{ user(id: \"1\") {{ name }} broken }}"

[[routes]]
name = "proxied"
upstream = "gql"
path_exact = "/graphql"
[routes.graphql_limits]
max_depth = 3
max_aliases = 2
max_cost = 50
"#,
        server.addr
    );
    gateway(&doc).await
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: serde_json::Value) -> Reply {
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

#[tokio::test]
async fn rest_calls_become_a_fixed_query_with_typed_variables() {
    let server = graphql_server().await;
    let gw = graphql_gateway(&server).await;
    let r = get(gw.http_addr(), "/users/42").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "user": { "id": "42", "name": "user-42" } }));
    // Int and Boolean from query parameters, converted to the declared types.
    let r = get(gw.http_addr(), "/users?first=2&active=true").await;
    assert_eq!(r.json(), json!({ "users": [{ "id": "0a" }, { "id": "1a" }] }));
    let bad = get(gw.http_addr(), "/users?first=two&active=true").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["failures"][0]["path"], "$first");
    // A list from the JSON body, passed as it is.
    let r = post_json(gw.http_addr(), "/lookup", json!({ "ids": ["a", "b"] })).await;
    assert_eq!(r.json(), json!({ "byIds": [{ "name": "user-a" }, { "name": "user-b" }] }));
    gw.shutdown().await;
}

#[tokio::test]
async fn graphql_errors_map_to_statuses() {
    let server = graphql_server().await;
    let gw = graphql_gateway(&server).await;
    let not_found = get(gw.http_addr(), "/users/404").await;
    assert_eq!(not_found.status, 404, "{}", not_found.text());
    let body = not_found.json();
    assert_eq!(body["error"], "graphql_errors");
    assert_eq!(body["errors"][0]["message"], "no such user");
    assert_eq!(body["errors"][0]["code"], "NOT_FOUND");
    assert_eq!(get(gw.http_addr(), "/users/500").await.status, 502);
    let partial = get(gw.http_addr(), "/partial").await;
    assert_eq!(partial.status, 200);
    assert_eq!(partial.headers["x-meridian-complete"], "false");
    assert_eq!(partial.json()["user"], json!({ "name": "user-1" }));
    gw.shutdown().await;
}

#[tokio::test]
async fn proxied_queries_over_the_limits_are_refused_before_the_upstream() {
    let server = graphql_server().await;
    let gw = graphql_gateway(&server).await;
    let addr = gw.http_addr();
    let ok = post_json(addr, "/graphql", json!({ "query": "{ user(id: \"7\") { name friends { id } } }" })).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["data"]["user"]["friends"][0]["id"], "7f");
    for (query, reason) in [
        ("{ user(id: \"1\") { friends { friends { friends { id } } } } }", "depth 5 exceeds 3"),
        ("{ a: user(id: \"1\") { id } b: user(id: \"2\") { id } c: user(id: \"3\") { id } }", "3 aliases exceed 2"),
        ("{ users(first: 100, active: true) { id } }", "cost 101 exceeds 50"),
        ("query { ...F } fragment F on Query { ...F }", "spreads itself"),
        ("{ user(id: ", "not a GraphQL query"),
    ] {
        let r = post_json(addr, "/graphql", json!({ "query": query })).await;
        assert_eq!(r.status, 400, "{query}");
        let message = r.json()["failures"][0]["message"].as_str().unwrap().to_string();
        assert!(message.contains(reason), "{query}: {message}");
    }
    // A batch is checked item by item, and capped.
    let batch = json!([{ "query": "{ user(id: \"1\") { id } }" }, { "query": "{ a: user(id: \"1\") { id } b: user(id: \"2\") { id } c: user(id: \"3\") { id } }" }]);
    assert_eq!(post_json(addr, "/graphql", batch).await.status, 400);
    let get_deep =
        get(addr, "/graphql?query=%7Buser(id%3A%221%22)%7Bfriends%7Bfriends%7Bfriends%7Bid%7D%7D%7D%7D%7D").await;
    assert_eq!(get_deep.status, 400);
    let m = metrics(gw.admin_addr).await;
    let refused = metric_value(
        &m,
        "meridian_transforms_total",
        &[("route", "proxied"), ("stage", "graphql"), ("result", "refused")],
    );
    assert_eq!(refused, 7.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn queries_that_do_not_fit_their_variables_are_refused_with_their_path() {
    for (route, path) in [
        ("query = \"{ a \"", "routes[0].graphql.query"),
        ("query = \"query A { a } query B { b }\"", "routes[0].graphql.operation_name"),
        ("query = \"query A($x: Int) { a }\"\nvariables = { y = \"1\" }", "routes[0].graphql.variables.y"),
        ("query = \"query A($x: Int!) { a }\"", "routes[0].graphql.variables"),
    ] {
        let doc = format!(
            "[upstreams.u]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n[routes.graphql]\n{route}\n"
        );
        let parsed: meridian_core::config::GatewayDocument =
            meridian_core::config::parse(&doc, meridian_core::config::Format::Toml).unwrap();
        let errors = meridian_core::config::validate_document(parsed).unwrap_err();
        assert!(errors.0.iter().any(|e| e.path == path), "{path} not in {errors}");
    }
}
