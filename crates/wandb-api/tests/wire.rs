//! What goes on the wire: query texts and variables, pinned as snapshots from the fake's
//! journal.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::{exercise, start};

#[tokio::test]
async fn query_texts_and_variables_are_pinned() {
    let (fake, client) = start().await;
    exercise(&fake, &client).await;
    let journal = fake.journal();
    for entry in &journal {
        assert_eq!(entry.status, 200, "{entry:#?}");
        assert!(
            entry.errors.is_empty(),
            "the fake rejected {:?}: {:?}",
            entry.operation,
            entry.errors
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in &journal {
        let operation = entry.operation.clone().unwrap_or_default();
        if !seen.insert(operation.clone()) {
            continue;
        }
        let text = format!(
            "operationName: {:?}\nvariables: {}\n\n{}",
            entry.operation_name_sent.as_deref().unwrap_or("(absent)"),
            serde_json::to_string_pretty(&entry.variables).unwrap_or_default(),
            entry.query
        );
        insta::assert_snapshot!(operation, text);
    }
    let fails: Vec<_> = fake.journal_of("failRunQueueItem");
    assert_eq!(fails.len(), 2);
    assert!(
        fails[0]
            .variables
            .as_ref()
            .unwrap()
            .get("filePaths")
            .is_some()
    );
    assert!(
        fails[1]
            .variables
            .as_ref()
            .unwrap()
            .get("filePaths")
            .is_none(),
        "filePaths must be left out when there are no files"
    );
    assert_eq!(seen.len(), 19, "every operation is covered: {seen:?}");
}
