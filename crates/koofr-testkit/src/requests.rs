//! Counting the emulator's request log: by endpoint, by endpoint below a folder, and by status;
//! and [`record`], one entry of such a log for tests of what reads it.

use koofr_emulator::RequestRecord;

/// How many of `requests` went to `endpoint` (e.g. `files/get`).
pub fn count(requests: &[RequestRecord], endpoint: &str) -> usize {
    requests.iter().filter(|r| r.endpoint == endpoint).count()
}

/// How many of `requests` went to `endpoint` for `folder` or a path below it.
pub fn count_below(requests: &[RequestRecord], endpoint: &str, folder: &str) -> usize {
    let folder = folder.trim_end_matches('/');
    let prefix = format!("{folder}/");
    requests
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .filter(|r| {
            r.path
                .as_deref()
                .is_some_and(|p| p == folder || p.starts_with(&prefix))
        })
        .count()
}

/// How many of `requests` were answered `status` (0: the connection was dropped).
pub fn count_status(requests: &[RequestRecord], status: u16) -> usize {
    requests.iter().filter(|r| r.status == status).count()
}

/// A `GET` of `path` on `endpoint` answered 200 with no body, as the emulator logs it.
pub fn record(endpoint: &'static str, path: &str) -> RequestRecord {
    RequestRecord {
        method: "GET".into(),
        endpoint,
        path: Some(path.into()),
        api_version: "v2",
        status: 200,
        bytes_in: 0,
        bytes_out: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_below_a_folder_only() {
        let log = vec![
            record("files/get", "/test/kloset/packfiles/ab"),
            record("files/get", "/test/kloset"),
            record("files/get", "/test/kloset2/x"),
            record("files/put", "/test/kloset/states"),
        ];
        assert_eq!(count(&log, "files/get"), 3);
        assert_eq!(count_below(&log, "files/get", "/test/kloset"), 2);
        assert_eq!(count_below(&log, "files/get", "/test/kloset/"), 2);
        assert_eq!(count_below(&log, "files/put", "/test/kloset"), 1);
    }

    #[test]
    fn counts_by_status() {
        let refused = RequestRecord {
            status: 401,
            ..record("mount", "/")
        };
        let log = vec![refused.clone(), record("mount", "/"), refused];
        assert_eq!(count_status(&log, 401), 2);
        assert_eq!(count_status(&log, 200), 1);
        assert_eq!(count_status(&log, 500), 0);
    }
}
