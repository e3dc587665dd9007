//! `[agent]`: who may open the agent screen-pop page (`/agent`). Without credentials the page
//! answers 401 to everyone: it shows caller numbers and verdicts.

use std::path::PathBuf;

use serde::Deserialize;

use super::Token;
use super::error::Problem;

/// `[agent]`: the screen-pop page's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// A shared token: sent as `Authorization: Bearer <token>`, or opened once as
    /// `/agent?token=<token>` (idgate then sets an HttpOnly cookie and drops it from the
    /// address). Prefer `token_file`. Default: none.
    pub token: Option<Token>,
    /// A file holding the token (read at start; surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// HTTP basic authentication: the user name (recorded as who asked to verify again).
    pub user: Option<String>,
    /// The basic-auth password. Prefer `password_file`.
    pub password: Option<Token>,
    /// A file holding the basic-auth password.
    pub password_file: Option<PathBuf>,
}

/// A secret file that cannot be used: names the key and the file, never the contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {detail}")]
pub struct SecretFileError {
    /// The config key (`agent.token_file`).
    pub key: &'static str,
    /// The file and what is wrong with it.
    pub detail: String,
}

/// The credentials read at start: what `api::agent` checks.
#[derive(Debug, Clone, Default)]
pub struct AgentCredentials {
    /// The shared token.
    pub token: Option<Token>,
    /// Basic auth: user and password.
    pub basic: Option<(String, Token)>,
}

impl AgentCredentials {
    /// Whether any credential is configured (else the page refuses everyone).
    pub fn any(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }
}

impl AgentConfig {
    /// One source per secret, no empty secret, user and password together.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        one_source("agent.token", &self.token, &self.token_file)?;
        one_source("agent.password", &self.password, &self.password_file)?;
        let has_password = self.password.is_some() || self.password_file.is_some();
        match &self.user {
            Some(user) if user.trim().is_empty() || user.contains(':') => Err(Problem::new(
                "agent.user",
                "must not be empty or contain ':'",
            )),
            Some(_) if !has_password => Err(Problem::new(
                "agent.password",
                "agent.user is set: set password or password_file too",
            )),
            None if has_password => Err(Problem::new(
                "agent.user",
                "a password is set: set the user name too",
            )),
            _ => Ok(()),
        }
    }

    /// Reads the secrets (files included). Errors name the key and the file, never a secret.
    pub fn credentials(&self) -> Result<AgentCredentials, SecretFileError> {
        let token = read("agent.token_file", &self.token, &self.token_file)?;
        let password = read("agent.password_file", &self.password, &self.password_file)?;
        let basic = self.user.clone().zip(password);
        Ok(AgentCredentials { token, basic })
    }
}

fn one_source(key: &str, value: &Option<Token>, file: &Option<PathBuf>) -> Result<(), Problem> {
    match (value, file) {
        (Some(_), Some(_)) => Err(Problem::new(
            key,
            format!("set {key} or {key}_file, not both"),
        )),
        (Some(v), None) if v.expose().trim().is_empty() => {
            Err(Problem::new(key, "must not be empty"))
        }
        _ => Ok(()),
    }
}

fn read(
    key: &'static str,
    value: &Option<Token>,
    file: &Option<PathBuf>,
) -> Result<Option<Token>, SecretFileError> {
    let Some(path) = file else {
        return Ok(value.clone());
    };
    let problem = |detail: String| SecretFileError {
        key,
        detail: format!("{}: {detail}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    match text.trim() {
        "" => Err(problem("the file is empty".to_owned())),
        secret => Ok(Some(Token::new(secret.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(body: &str) -> String {
        Config::parse("idgate.toml", &format!("[agent]\n{body}"))
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn bad_credentials_are_refused_naming_the_key() {
        assert!(err("token = \" \"").contains("agent.token"));
        assert!(err("token = \"a\"\ntoken_file = \"/x\"").contains("agent.token"));
        assert!(err("user = \"alice\"").contains("agent.password"));
        assert!(err("password = \"pw\"").contains("agent.user"));
        assert!(err("user = \"a:b\"\npassword = \"pw\"").contains("agent.user"));
        assert!(err("tokn = \"a\"").contains("tokn"));
    }

    #[test]
    fn credentials_come_from_the_config_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let body = format!(
            "[agent]\ntoken = \"tok\"\nuser = \"alice\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let config = Config::parse("idgate.toml", &body).unwrap();
        let creds = config.agent.credentials().unwrap();
        assert_eq!(creds.token.as_ref().map(|t| t.expose()), Some("tok"));
        let (user, password) = creds.basic.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("alice", "s3cret"));

        let none = Config::parse("idgate.toml", "").unwrap();
        assert!(!none.agent.credentials().unwrap().any());

        std::fs::write(&file, "\n").unwrap();
        let problem = config.agent.credentials().unwrap_err();
        assert!(
            problem.to_string().contains("agent.password_file"),
            "{problem}"
        );
    }
}
