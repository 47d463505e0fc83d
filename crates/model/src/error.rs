//! Errors of the render engine: every problem names the field path, what is wrong and the fix.

use std::fmt;

/// One problem with one field of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is, e.g. `resource_args.kubernetes.spec.template.spec.hostNetwork`.
    pub path: String,
    /// What is wrong with it, lower-case, no trailing period.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(
        path: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.path, self.problem, self.fix)
    }
}

/// The input cannot be rendered. Holds every problem found, so a user fixes them in one pass.
///
/// The agent turns this into a failed queue item (stage `agent`) whose message is the
/// `Display` text; `launch-render` prints it and exits 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RenderError {
    /// The problems, in the order they were found. Never empty.
    pub problems: Vec<FieldError>,
}

impl RenderError {
    /// An error with a single problem.
    pub fn one(problem: FieldError) -> Self {
        Self {
            problems: vec![problem],
        }
    }

    /// An error with several problems.
    pub fn many(problems: Vec<FieldError>) -> Self {
        Self { problems }
    }

    /// Prefixes every path, e.g. with the input file name, so the message names the file.
    pub fn in_file(mut self, file: &str) -> Self {
        for problem in &mut self.problems {
            problem.path = format!("{file}: {}", problem.path);
        }
        self
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid input: {one}"),
            many => {
                write!(f, "invalid input ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

/// `Result` with [`RenderError`] as the default error.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;
