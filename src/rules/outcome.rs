//! The classification of a WeCom answer: what the worker does with the message and the robot.

/// What came back from one POST to a robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// HTTP 200 with WeCom's JSON `{"errcode":…,"errmsg":…}`.
    WeCom { errcode: i64, errmsg: String },
    /// Any other HTTP status (5xx, an unexpected 4xx from a proxy).
    HttpStatus(u16),
    /// HTTP 200 whose body is not WeCom's JSON.
    Unreadable(String),
    /// No answer: connection refused or dropped, DNS, TLS, or the request timed out.
    NoAnswer(String),
}

/// What the reply means for the message and for the robot that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: `errcode 0`.
    Sent,
    /// 45009: the robot is over WeCom's limit. Pause the robot; the message did nothing wrong.
    RateLimited,
    /// Worth trying again later: the message keeps its place, an attempt is used.
    Transient,
    /// WeCom says the payload itself is wrong: retrying cannot help.
    Rejected,
    /// The robot is gone, disabled or out of its group: disable it, keep its messages.
    RobotGone,
}

/// Errcodes that mean the robot cannot be used any more.
pub const ROBOT_GONE: [i64; 3] = [93000, 93004, 93008];

/// Errcodes that mean the message body is wrong.
pub const PAYLOAD_WRONG: [i64; 8] = [40008, 40035, 40058, 44004, 45002, 45008, 41009, 301019];

/// What to do after `reply`. Unknown errcodes are retried: losing a parent's message to an
/// errcode we have not seen is worse than a few retries.
pub fn classify(reply: &Reply) -> Outcome {
    match reply {
        Reply::WeCom { errcode: 0, .. } => Outcome::Sent,
        Reply::WeCom { errcode: 45009, .. } => Outcome::RateLimited,
        Reply::WeCom { errcode, .. } if ROBOT_GONE.contains(errcode) => Outcome::RobotGone,
        Reply::WeCom { errcode, .. } if PAYLOAD_WRONG.contains(errcode) => Outcome::Rejected,
        Reply::WeCom { .. } => Outcome::Transient,
        Reply::HttpStatus(_) | Reply::Unreadable(_) | Reply::NoAnswer(_) => Outcome::Transient,
    }
}

impl Reply {
    /// The errcode to record: WeCom's, or none when WeCom did not answer.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Reply::WeCom { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// A one-line description for `last_error` and the log.
    pub fn describe(&self) -> String {
        match self {
            Reply::WeCom { errcode, errmsg } => format!("errcode {errcode}: {errmsg}"),
            Reply::HttpStatus(status) => format!("HTTP {status} from WeCom"),
            Reply::Unreadable(body) => format!("unreadable answer: {body}"),
            Reply::NoAnswer(why) => format!("no answer: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wecom(errcode: i64) -> Reply {
        Reply::WeCom {
            errcode,
            errmsg: String::new(),
        }
    }

    #[test]
    fn classifies_wecom_errcodes() {
        assert_eq!(classify(&wecom(0)), Outcome::Sent);
        assert_eq!(classify(&wecom(45009)), Outcome::RateLimited);
        for code in [-1, 45033, 12345] {
            assert_eq!(classify(&wecom(code)), Outcome::Transient, "{code}");
        }
        for code in [93000, 93004, 93008] {
            assert_eq!(classify(&wecom(code)), Outcome::RobotGone, "{code}");
        }
        for code in [40008, 40058, 44004, 45002, 45008] {
            assert_eq!(classify(&wecom(code)), Outcome::Rejected, "{code}");
        }
    }

    #[test]
    fn no_answer_and_server_errors_are_transient() {
        assert_eq!(classify(&Reply::HttpStatus(502)), Outcome::Transient);
        assert_eq!(
            classify(&Reply::Unreadable("<html>".into())),
            Outcome::Transient
        );
        assert_eq!(
            classify(&Reply::NoAnswer("timed out".into())),
            Outcome::Transient
        );
    }
}
