//! A product catalogue: list, fetch by id, and quote an order with tax.
//!
//! GET  /              → API info (version and currency from config)
//! GET  /products      → all products
//! GET  /products/{id} → one product, or 404
//! POST /quote         → {"items":[{"id":1,"qty":2}]} → totals with tax

use nubo_sdk::http::Method;
use nubo_sdk::{Request, Response, response};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Clone, Copy)]
struct Product {
    id: u32,
    name: &'static str,
    price_cents: u64,
}

const PRODUCTS: &[Product] = &[
    Product {
        id: 1,
        name: "Cloud-shaped mug",
        price_cents: 1200,
    },
    Product {
        id: 2,
        name: "Edge sticker pack",
        price_cents: 450,
    },
    Product {
        id: 3,
        name: "WASM hoodie",
        price_cents: 4900,
    },
];

#[derive(Deserialize)]
struct QuoteRequest {
    items: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    id: u32,
    qty: u32,
}

fn json(status: u16, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    response(status, "application/json", body)
}

fn error(status: u16, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn config(key: &str, default: &str) -> String {
    nubo_sdk::config::get(key).unwrap_or_else(|| default.to_string())
}

fn handle(req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "") => json(
            200,
            &serde_json::json!({
                "name": "json-api",
                "version": config("version", "v1"),
                "currency": config("currency", "EUR"),
                "endpoints": ["GET /products", "GET /products/{id}", "POST /quote"],
            }),
        ),
        (&Method::GET, "/products") => json(200, &PRODUCTS),
        (&Method::GET, p) if p.starts_with("/products/") => {
            let id = &p["/products/".len()..];
            match id
                .parse::<u32>()
                .ok()
                .and_then(|id| PRODUCTS.iter().find(|x| x.id == id))
            {
                Some(product) => json(200, product),
                None => error(404, format!("no product with id {id}")),
            }
        }
        (&Method::POST, "/quote") => quote(req.body()),
        (_, "/quote") | (_, "/products") => error(405, "method not allowed"),
        _ => error(404, format!("no route {path}")),
    }
}

fn quote(body: &[u8]) -> Response {
    let order: QuoteRequest = match serde_json::from_slice(body) {
        Ok(o) => o,
        Err(e) => return error(400, format!("invalid JSON body: {e}")),
    };
    let tax_rate: f64 = match config("tax_rate", "0.20").parse() {
        Ok(r) => r,
        Err(_) => return error(500, "tax_rate config is not a number"),
    };
    let mut subtotal = 0u64;
    for line in &order.items {
        let Some(p) = PRODUCTS.iter().find(|p| p.id == line.id) else {
            return error(422, format!("unknown product id {}", line.id));
        };
        subtotal += p.price_cents * u64::from(line.qty);
    }
    let tax = (subtotal as f64 * tax_rate).round() as u64;
    json(
        200,
        &serde_json::json!({
            "currency": config("currency", "EUR"),
            "subtotal_cents": subtotal,
            "tax_cents": tax,
            "total_cents": subtotal + tax,
        }),
    )
}

nubo_sdk::http_handler!(handle);
