//! The one error type of the domain. Every variant reads as a sentence a person can act on;
//! the API maps each kind to Nova's fault names and status codes.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A field of a request is malformed or out of range. Nothing was changed.
    Invalid { field: String, problem: String },
    /// The request contradicts existing state (overlap, duplicate, in use). Nothing was changed.
    Conflict(String),
    /// The named thing does not exist (or is not visible to the caller).
    NotFound(String),
    /// A pool ran dry: no fixed IP, floating IP or network left.
    Exhausted(String),
    /// The caller may not do this.
    Forbidden(String),
    /// A quota would be exceeded.
    OverLimit(String),
    /// The store failed underneath (I/O, corruption). Nothing the caller can fix.
    Store(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }
    pub fn conflict(what: impl Into<String>) -> Self {
        Error::Conflict(what.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { field, problem } => write!(f, "invalid {field}: {problem}"),
            Error::Conflict(m)
            | Error::NotFound(m)
            | Error::Exhausted(m)
            | Error::Forbidden(m)
            | Error::OverLimit(m) => f.write_str(m),
            Error::Store(m) => write!(f, "state store failure: {m}"),
        }
    }
}

impl std::error::Error for Error {}
