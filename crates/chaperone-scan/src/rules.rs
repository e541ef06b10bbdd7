//! Detection rules: a documented TOML format (`rules/secrets.toml` holds the built-in set),
//! compiled into regex-automata regexes with ASCII classes, and filters that keep
//! placeholders out.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use serde::Deserialize;

/// How bad a finding is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Likely a problem.
    Medium,
    /// A live credential, probably.
    High,
    /// A credential that opens production or money.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity {text:?}: low, medium, high or critical"
            )),
        }
    }
}

/// A rule as written in TOML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id, e.g. `aws-access-key-id`.
    pub id: String,
    /// What it finds.
    pub description: String,
    /// How bad a finding is.
    pub severity: Severity,
    /// What a finding is: a leaked secret (shown redacted) or malicious code (shown).
    #[serde(default)]
    pub category: Category,
    /// File names the rule applies to (`package.json`); every file when empty.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Lowercase literals; a line is searched with the regex only if it holds one.
    pub keywords: Vec<String>,
    /// The pattern (Rust regex syntax, ASCII classes).
    pub regex: String,
    /// The capture group holding the secret (0: the whole match).
    #[serde(default)]
    pub secret_group: usize,
    /// Minimum Shannon entropy of the secret, in bits per character.
    pub entropy: Option<f64>,
    /// Lines that must produce a finding.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Lines that must not.
    #[serde(default)]
    pub counter_examples: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
    /// Ids of built-in rules to turn off.
    #[serde(default)]
    disable: Vec<String>,
}

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The TOML does not parse or has unknown fields.
    #[error("rules: {0}")]
    Toml(String),
    /// A regex does not compile.
    #[error("rule {id}: invalid regex: {message}")]
    Regex {
        /// The rule.
        id: String,
        /// The compiler's message.
        message: String,
    },
    /// A rule is malformed (duplicate id, no keywords, bad group).
    #[error("rule {id}: {message}")]
    Invalid {
        /// The rule.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// As written.
    pub spec: RuleSpec,
    pub(crate) regex: Regex,
}

/// What a rule finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// A credential or other secret: the finding shows it redacted.
    #[default]
    Secret,
    /// Code that downloads and runs, hides, spawns shells or exfiltrates: the finding shows
    /// the code.
    Malicious,
}

impl RuleSpec {
    /// Whether the rule applies to the file at `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        self.paths.is_empty() || self.paths.iter().any(|p| p == name)
    }
}

/// The built-in credential rules, compiled into the binary.
pub const BUILTIN: &str = include_str!("../rules/secrets.toml");
/// The built-in malicious-code heuristics, compiled into the binary.
pub const BUILTIN_MALICIOUS: &str = include_str!("../rules/malicious.toml");

/// A set of compiled rules.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    /// Ids turned off by `disable` lists, including the sensitive-data detectors'.
    pub(crate) disabled: Vec<String>,
}

impl RuleSet {
    /// The built-in rules.
    pub fn builtin() -> Result<Self, RuleError> {
        Self::load(&[BUILTIN, BUILTIN_MALICIOUS])
    }

    /// The built-in rules, then each user file in order: its rules are added (an id already
    /// present replaces the earlier rule) and its `disable` list removes rules by id.
    pub fn with_user_files(files: &[&str]) -> Result<Self, RuleError> {
        let mut all = vec![BUILTIN, BUILTIN_MALICIOUS];
        all.extend_from_slice(files);
        Self::load(&all)
    }

    fn load(files: &[&str]) -> Result<Self, RuleError> {
        let mut specs: Vec<RuleSpec> = Vec::new();
        let mut disabled = Vec::new();
        for text in files {
            let file: RuleFile =
                toml::from_str(text).map_err(|e| RuleError::Toml(e.to_string()))?;
            for spec in file.rule {
                specs.retain(|s| s.id != spec.id);
                specs.push(spec);
            }
            specs.retain(|s| !file.disable.contains(&s.id));
            disabled.extend(file.disable);
        }
        let rules = specs
            .into_iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules, disabled })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
    let invalid = |message: &str| RuleError::Invalid {
        id: spec.id.clone(),
        message: message.to_owned(),
    };
    if spec.keywords.is_empty() || spec.keywords.iter().any(|k| k.is_empty()) {
        return Err(invalid("needs at least one non-empty keyword"));
    }
    if spec.keywords.iter().any(|k| k.to_ascii_lowercase() != *k) {
        return Err(invalid("keywords must be lowercase"));
    }
    // ASCII classes: `\w`, `\d` and `\b` mean their ASCII forms, and the input is bytes.
    let regex = Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&spec.regex)
        .map_err(|e| RuleError::Regex {
            id: spec.id.clone(),
            message: e.to_string(),
        })?;
    if spec.secret_group
        >= regex
            .group_info()
            .group_len(regex_automata::PatternID::ZERO)
    {
        return Err(invalid("secret_group is not a group of the regex"));
    }
    Ok(Rule { spec, regex })
}

/// Shannon entropy of `bytes`, in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Words that mark a value as a placeholder, not a secret.
const PLACEHOLDERS: &[&str] = &[
    "example",
    "xxxx",
    "changeme",
    "change_me",
    "dummy",
    "sample",
    "placeholder",
    "your_",
    "your-",
    "yourkey",
    "redacted",
    "${",
    "{{",
    "<",
    ">",
    "0000000000",
    "1234567890",
    "abcdefgh",
    "*****",
    // References to where the secret really lives.
    "process.env",
    "os.environ",
    "getenv",
    "env::var",
];

/// Whether `secret` is a placeholder (`EXAMPLE`, `xxxx`, `changeme`, `${VAR}`, `<your-key>`)
/// or a reference to an environment variable (`process.env.API_KEY`).
pub fn is_placeholder(secret: &[u8]) -> bool {
    let lower = secret.to_ascii_lowercase();
    PLACEHOLDERS
        .iter()
        .any(|word| lower.windows(word.len()).any(|w| w == word.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(entropy(b""), 0.0);
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"ab") - 1.0).abs() < 1e-9);
        assert!(entropy(b"q8Zr2LmX9vTp4WkN") > 3.5);
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "AKIAIOSFODNN7EXAMPLE",
            "xxxxxxxxxxxx",
            "changeme",
            "${DB_PASSWORD}",
            "<your-key>",
            "{{ secret }}",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        assert!(!is_placeholder(b"q8Zr2LmX9vTp4WkN"));
    }

    #[test]
    fn user_files_add_replace_and_disable() {
        let builtin = RuleSet::builtin().unwrap();
        let first = builtin.rules()[0].spec.id.clone();
        let user = format!(
            "disable = [\"{first}\"]\n[[rule]]\nid = \"acme-token\"\ndescription = \"ACME\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\nregex = '''acme_[a-z0-9]{{20}}'''\n"
        );
        let set = RuleSet::with_user_files(&[&user]).unwrap();
        assert!(set.rules().iter().all(|r| r.spec.id != first));
        assert!(set.rules().iter().any(|r| r.spec.id == "acme-token"));
        assert_eq!(set.rules().len(), builtin.rules().len());
        let bad = "[[rule]]\nid = \"x\"\ndescription = \"x\"\nseverity = \"low\"\nkeywords = [\"x\"]\nregex = '''(?=x)'''\n";
        assert!(matches!(
            RuleSet::with_user_files(&[bad]),
            Err(RuleError::Regex { .. })
        ));
        assert!(RuleSet::with_user_files(&["[[rule]]\nid = 1"]).is_err());
    }
}
