//! `sql-bench sqlite FILE OP N ROWS` or `sql-bench pg URL OP N ROWS`: runs
//! N statements of one kind (point, insert, join), as the sqlbench
//! component does, and prints the nanoseconds per statement.
//!
//! SQLite is opened as Nubo opens it (WAL, synchronous = NORMAL, exclusive
//! locking) and statements are prepared once, as a native program would.

use std::time::Instant;

const POINT: &str = "SELECT name, email FROM users WHERE id = ?1";
const INSERT: &str = "INSERT INTO events (user_id, kind) VALUES (?1, ?2)";
const JOIN: &str = "SELECT u.name, count(o.id), sum(o.total) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = ?1 GROUP BY u.id, u.name";

fn id(i: usize, rows: i64) -> i64 {
    (i as i64 * 7919) % rows + 1
}

fn sqlite(file: &str, op: &str, n: usize, rows: i64) -> u128 {
    let c = nubo_sqlite::open(std::path::Path::new(file), nubo_sqlite::Synchronous::Normal)
        .expect("open the SQLite file");
    let started = Instant::now();
    for i in 0..n {
        let got = match op {
            "point" => {
                let mut s = c.prepare_cached(POINT).unwrap();
                let mut r = s.query([id(i, rows)]).unwrap();
                let mut count = 0;
                while let Some(row) = r.next().unwrap() {
                    let _: (String, String) = (row.get(0).unwrap(), row.get(1).unwrap());
                    count += 1;
                }
                count
            }
            "insert" => {
                let mut s = c.prepare_cached(INSERT).unwrap();
                s.execute(rusqlite::params![id(i, rows), "click"]).unwrap()
            }
            "join" => {
                let mut s = c.prepare_cached(JOIN).unwrap();
                let mut r = s.query([id(i, rows)]).unwrap();
                let mut count = 0;
                while let Some(row) = r.next().unwrap() {
                    let _: (String, i64, i64) = (
                        row.get(0).unwrap(),
                        row.get(1).unwrap(),
                        row.get(2).unwrap(),
                    );
                    count += 1;
                }
                count
            }
            other => panic!("unknown op {other}"),
        };
        assert_eq!(got, 1, "{op}");
    }
    started.elapsed().as_nanos() / n.max(1) as u128
}

async fn pg(url: &str, op: &str, n: usize, rows: i64) -> u128 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    let dollar = |s: &str| s.replace("?1", "$1").replace("?2", "$2");
    let text = match op {
        "point" => POINT,
        "insert" => INSERT,
        "join" => JOIN,
        other => panic!("unknown op {other}"),
    };
    let stmt = client.prepare(&dollar(text)).await.unwrap();
    let started = Instant::now();
    for i in 0..n {
        let got = match op {
            "insert" => client
                .execute(&stmt, &[&id(i, rows), &"click"])
                .await
                .unwrap() as usize,
            _ => client.query(&stmt, &[&id(i, rows)]).await.unwrap().len(),
        };
        assert_eq!(got, 1, "{op}");
    }
    started.elapsed().as_nanos() / n.max(1) as u128
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, target, op, n, rows] = &args[..] else {
        eprintln!("usage: sql-bench sqlite|pg FILE|URL point|insert|join N ROWS");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let rows: i64 = rows.parse().expect("ROWS");
    let ns = match engine.as_str() {
        "sqlite" => sqlite(target, op, n, rows),
        "pg" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(pg(target, op, n, rows)),
        other => panic!("unknown engine {other}"),
    };
    println!("{ns}");
}
