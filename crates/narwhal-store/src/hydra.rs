//! Hydra's JSON API: the outputs of a job's latest successful build.
//!
//! `GET <job URL>/latest` with `Accept: application/json` answers with the
//! build; its `buildoutputs` map output names to `{"path": "/nix/store/…"}`.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::error::{HydraProblem, StoreError, StoreErrorKind};
use crate::http::{body, get_once, HttpOptions};

#[derive(Debug, Deserialize)]
struct Build {
    #[serde(default)]
    buildoutputs: BTreeMap<String, Output>,
    #[serde(default)]
    buildstatus: Option<i64>,
    #[serde(default)]
    finished: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Output {
    path: String,
}

/// Whether `s` looks like a Hydra job URL (`http(s)://host/job/<project>/<jobset>/<job>`).
pub fn is_job_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && s.contains("/job/")
}

/// The output paths of the latest successful build of the job at `job_url`,
/// `out` first.
pub fn latest_outputs(job_url: &str, options: &HttpOptions) -> Result<Vec<String>, StoreError> {
    let url = format!("{}/latest", job_url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(options.timeout)
        .build()
        .map_err(|e| StoreError::new(&url, StoreErrorKind::Transport { attempts: 0, source: Box::new(e) }))?;
    let body = options.retry(|attempt| match get_once(&client, &url, Some("application/json"), attempt)? {
        Some(resp) => body(resp, &url, attempt),
        None => Err(StoreError::new(&url, StoreErrorKind::Status { status: 404, attempts: attempt })),
    })?;
    let invalid = |why: HydraProblem| StoreError::new(&url, StoreErrorKind::Hydra(why));
    let build: Build = serde_json::from_slice(&body).map_err(|e| invalid(HydraProblem::NotABuild(e.to_string())))?;
    if build.finished == Some(0) || build.buildstatus.is_some_and(|s| s != 0) {
        return Err(invalid(HydraProblem::Failed));
    }
    let mut outs: Vec<(String, String)> = build.buildoutputs.into_iter().map(|(k, v)| (k, v.path)).collect();
    if outs.is_empty() {
        return Err(invalid(HydraProblem::NoOutputs));
    }
    outs.sort_by_key(|(k, _)| k != "out");
    Ok(outs.into_iter().map(|(_, p)| p).collect())
}
