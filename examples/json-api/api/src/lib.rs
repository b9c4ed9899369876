//! A product catalogue: list, fetch by id, and quote an order with tax.
//!
//! GET  /              → API info (version and currency from config)
//! GET  /products      → all products
//! GET  /products/{id} → one product, or 404
//! POST /quote         → {"items":[{"id":1,"qty":2}]} → totals with tax

use nubo_sdk::{Error, Json, Request, Response, Router, StatusCode, param};
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

fn config(key: &str, default: &str) -> String {
    nubo_sdk::config::get(key).unwrap_or_else(|| default.to_string())
}

fn info(_: Request) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "json-api",
        "version": config("version", "v1"),
        "currency": config("currency", "EUR"),
        "endpoints": ["GET /products", "GET /products/{id}", "POST /quote"],
    }))
}

fn product(req: Request) -> Result<Json<Product>, Error> {
    let id = param(&req, "id").unwrap_or_default();
    id.parse::<u32>()
        .ok()
        .and_then(|id| PRODUCTS.iter().find(|p| p.id == id))
        .map(|p| Json(*p))
        .ok_or_else(|| Error::not_found(format!("no product with id {id}")))
}

fn quote(req: Request) -> Result<Json<serde_json::Value>, Error> {
    let Json(order) = Json::<QuoteRequest>::from_request(&req)?;
    let tax_rate: f64 = config("tax_rate", "0.20")
        .parse()
        .map_err(|_| Error::from("the tax_rate config is not a number"))?;
    let mut subtotal = 0u64;
    for line in &order.items {
        let Some(p) = PRODUCTS.iter().find(|p| p.id == line.id) else {
            let message = format!("unknown product id {}", line.id);
            return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, message));
        };
        subtotal += p.price_cents * u64::from(line.qty);
    }
    let tax = (subtotal as f64 * tax_rate).round() as u64;
    Ok(Json(serde_json::json!({
        "currency": config("currency", "EUR"),
        "subtotal_cents": subtotal,
        "tax_cents": tax,
        "total_cents": subtotal + tax,
    })))
}

fn handle(req: Request) -> Response {
    Router::new()
        .get("/", info)
        .get("/products", |_| Json(PRODUCTS))
        .get("/products/:id", product)
        .post("/quote", quote)
        .handle(req)
}

nubo_sdk::http_handler!(handle);
