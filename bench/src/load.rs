//! Load shapes: one client calling back to back, many clients at their maximum rate, and many
//! clients sharing a fixed arrival rate (latency counted from the moment each call is released
//! into the queue, not from when a client is free to send it, so a stall delays the calls
//! queued behind it in the figures too: no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};

use crate::client::{Client, Endpoint, Era};

/// The argument every `echo` call sends: a constant request gets a constant-size answer.
pub const TEXT: &str = "portcullis-bench-payload-0123456789";

/// Latencies in nanoseconds, with the calls' wall time.
#[derive(Debug, Clone)]
pub struct Sample {
    pub hist: Histogram<u64>,
    pub wall: Duration,
}

impl Sample {
    pub fn calls(&self) -> u64 {
        self.hist.len()
    }
    pub fn rate(&self) -> f64 {
        self.calls() as f64 / self.wall.as_secs_f64()
    }
    /// The latency at quantile `q`, in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e3
    }
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1e3
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record(d.as_nanos().min(u64::MAX as u128) as u64);
}

/// How much of a load to run: `calls` calls, ended early after `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub calls: u64,
    pub limit: Duration,
}

/// One client, `warmup` untimed calls, then back to back within `budget`.
pub async fn sequential(ep: &Endpoint, era: Era, warmup: u64, budget: Budget) -> Result<Sample> {
    let mut c = Client::connect(ep, era).await?;
    for _ in 0..warmup {
        c.call(&ep.echo, TEXT).await?;
    }
    let mut hist = histogram();
    let started = Instant::now();
    for _ in 0..budget.calls {
        let t = Instant::now();
        c.call(&ep.echo, TEXT).await?;
        record(&mut hist, t.elapsed());
        if started.elapsed() >= budget.limit {
            break;
        }
    }
    Ok(Sample {
        hist,
        wall: started.elapsed(),
    })
}

/// The clients' histograms merged; the first client's failure fails the load.
async fn merged(
    mut tasks: tokio::task::JoinSet<Result<Histogram<u64>>>,
    started: Instant,
) -> Result<Sample> {
    let mut hist = histogram();
    while let Some(h) = tasks.join_next().await {
        hist.add(h??)?;
    }
    Ok(Sample {
        hist,
        wall: started.elapsed(),
    })
}

/// `clients` clients, each connected and past its first call (untimed).
async fn connect_all(ep: &Endpoint, era: Era, clients: usize) -> Result<Vec<Client>> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = Client::connect(ep, era).await?;
        c.call(&ep.echo, TEXT).await?;
        connected.push(c);
    }
    Ok(connected)
}

/// `clients` clients, each on its own connection (and session), each calling back to back
/// within `budget` (calls per client).
pub async fn max_rate(ep: &Endpoint, era: Era, clients: usize, budget: Budget) -> Result<Sample> {
    let connected = connect_all(ep, era, clients).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in connected {
        let tool = ep.echo.clone();
        tasks.spawn(async move {
            let mut hist = histogram();
            for _ in 0..budget.calls {
                let t = Instant::now();
                c.call(&tool, TEXT).await?;
                record(&mut hist, t.elapsed());
                if started.elapsed() >= budget.limit {
                    break;
                }
            }
            anyhow::Ok(hist)
        });
    }
    merged(tasks, started).await
}

/// `rate` calls per second for `duration`, served by `clients` clients: each call is released
/// at its slot; a client takes the next released call when free and the latency counts from
/// the release. (Released, not due: tokio's timer wakes on millisecond ticks, so a release can
/// be up to 1 ms after its slot; that lateness is the generator's, not the path's.)
pub async fn fixed_rate(
    ep: &Endpoint,
    era: Era,
    clients: usize,
    rate: u32,
    duration: Duration,
) -> Result<Sample> {
    let connected = connect_all(ep, era, clients).await?;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let (tx, rx) = mpsc::channel::<Instant>(total.max(1) as usize);
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in connected {
        let (tool, rx) = (ep.echo.clone(), rx.clone());
        tasks.spawn(async move {
            let mut hist = histogram();
            loop {
                let Some(released) = rx.lock().await.recv().await else {
                    return anyhow::Ok(hist);
                };
                c.call(&tool, TEXT).await?;
                record(&mut hist, released.elapsed());
            }
        });
    }
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..total {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        if tx.send(Instant::now()).await.is_err() {
            break;
        }
    }
    drop(tx);
    merged(tasks, started).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::Upstream;

    #[tokio::test]
    async fn each_load_shape_counts_every_call() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(Arc::new(Upstream::new(1)).serve(listener));
        let ep = Endpoint {
            url: url.parse().unwrap(),
            token: None,
            echo: "echo".into(),
        };
        let budget = Budget {
            calls: 40,
            limit: Duration::from_secs(60),
        };
        assert_eq!(
            sequential(&ep, Era::Legacy, 5, budget)
                .await
                .unwrap()
                .calls(),
            40
        );
        assert_eq!(
            max_rate(&ep, Era::Modern, 3, budget).await.unwrap().calls(),
            120
        );
        let fixed = fixed_rate(&ep, Era::Legacy, 2, 200, Duration::from_millis(250))
            .await
            .unwrap();
        assert_eq!(fixed.calls(), 50);
        // A path that does not exist fails the load instead of being counted.
        let wrong = Endpoint {
            echo: "missing".into(),
            ..ep
        };
        assert!(sequential(&wrong, Era::Legacy, 0, budget).await.is_err());
    }
}
