//! Identity providers behind one trait (the simulator now; BankID, Freja and the company app
//! later), and the customer directory.

pub mod app_push;
pub mod bankid;
pub mod directory;
pub mod freja;
pub mod simulator;
pub mod tls;

#[cfg(test)]
pub mod contract;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::identity::{E164, Method, PersonalNumber, Reason, VerifiedPerson};

/// Whom a push is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A person by personal identity number (BankID phone/auth, Freja by SSN).
    Person(PersonalNumber),
    /// A person by the phone number they called from (Freja `userInfoType: PHONE`, simulator).
    Phone(E164),
}

/// One verification order to start.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// idgate's call id (for audit and the provider's non-visible data).
    pub call_id: Uuid,
    /// Whom to push to.
    pub subject: Subject,
    /// The route's language (`"sv"`, `"en"`): the language of the text shown in the app.
    pub language: &'static str,
    /// The route's own text for the app (BankID's `userVisibleData`), if it has one; else the
    /// provider's text for `language`.
    pub intent: Option<String>,
}

/// What the provider says while the order is pending (drives the prompts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// The order exists; the app has not picked it up yet (`outstandingTransaction`, `noClient`).
    Sent,
    /// The user opened the app (`started`).
    Started,
    /// The app asks the user to confirm they are in a call with us (`userCallConfirm`).
    CallConfirm,
    /// The user is being asked for their PIN or face (`userSign`, `userMrtd`).
    Signing,
}

/// How an order ended without a verified person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The person cancelled in the app.
    #[error("the person declined in the app")]
    Declined,
    /// The person said they are not in a call with us (fraud signal).
    #[error("the person said they are not in a call with us")]
    NotInCall,
    /// The order expired.
    #[error("the order expired")]
    Timeout,
    /// The provider refused because of rate limits or a concurrent order.
    #[error("rate limited")]
    RateLimited,
    /// The provider failed or could not be reached; the detail is for logs, never personal data.
    #[error("provider error: {0}")]
    Provider(String),
}

impl Failure {
    /// The `X-Identity-Reason` this failure is reported as.
    pub fn reason(&self) -> Reason {
        match self {
            Failure::Declined => Reason::Declined,
            Failure::NotInCall => Reason::NotInCall,
            Failure::Timeout => Reason::Timeout,
            Failure::RateLimited => Reason::RateLimited,
            Failure::Provider(_) => Reason::ProviderError,
        }
    }
}

/// A progress report from a running order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyUpdate {
    /// Still pending.
    Pending(Hint),
    /// Completed: the provider vouches for this person.
    Complete(VerifiedPerson),
    /// Ended without a verified person.
    Failed(Failure),
}

impl Hint {
    /// The token recorded in the audit trail (`verification_events.detail`).
    pub fn as_str(self) -> &'static str {
        match self {
            Hint::Sent => "sent",
            Hint::Started => "started",
            Hint::CallConfirm => "call-confirm",
            Hint::Signing => "signing",
        }
    }
}

/// The provider's own reference of an order (BankID `orderRef`, Freja `authRef`, the app-push
/// order id), for the audit trail. The provider's task sets it once the order exists, before
/// its first update; a provider without one (the simulator) never sets it. Never logged: its
/// `Debug` shows nothing.
#[derive(Clone, Default)]
pub struct OrderRef(std::sync::Arc<std::sync::OnceLock<String>>);

impl OrderRef {
    /// Sets the reference (only the first call counts).
    pub fn set(&self, reference: &str) {
        let _ = self.0.set(reference.to_owned());
    }

    /// The reference, once set.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

impl std::fmt::Debug for OrderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderRef(..)")
    }
}

/// A running order: its updates, and a way to cancel it. Dropping the handle cancels the order.
#[derive(Debug)]
pub struct Verification {
    /// Updates, ending with `Complete` or `Failed` (or closing if cancelled).
    pub updates: mpsc::Receiver<VerifyUpdate>,
    cancel: CancellationToken,
    order_ref: OrderRef,
}

impl Verification {
    /// Wraps a receiver and the token the provider's task watches.
    pub fn new(updates: mpsc::Receiver<VerifyUpdate>, cancel: CancellationToken) -> Self {
        Self {
            updates,
            cancel,
            order_ref: OrderRef::default(),
        }
    }

    /// The handle carries `order_ref`, which the provider's task sets once the order exists.
    pub fn with_order_ref(mut self, order_ref: OrderRef) -> Self {
        self.order_ref = order_ref;
        self
    }

    /// The provider's reference of the order (shared: it is set when the order exists).
    pub fn order_ref(&self) -> OrderRef {
        self.order_ref.clone()
    }

    /// Asks the provider to cancel the order (BankID `/cancel`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Verification {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An eID provider. `start` spawns the provider's own task (on the current tokio runtime) and
/// returns at once; the task reports through the handle and stops when it is cancelled.
pub trait Provider: Send + Sync + 'static {
    /// The method written in `X-Identity-Method`.
    fn method(&self) -> Method;
    /// Whether pushes can be addressed by phone number (`Subject::Phone`).
    fn supports_phone(&self) -> bool;
    /// Starts an order.
    fn start(&self, request: VerifyRequest) -> Verification;
}

/// A provider could not be set up from its configuration (certificates, URLs).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file named in the configuration could not be read or parsed.
    #[error("{key}: {path}: {detail}")]
    File {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A setting is not usable.
    #[error("{key}: {detail}")]
    Invalid {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Evidence a provider returned with a completed order (BankID's signature and OCSP response),
/// for the audit trail. Personal data: stored, never logged.
#[derive(Clone)]
pub struct Evidence {
    /// idgate's call id.
    pub call_id: Uuid,
    /// The provider.
    pub method: Method,
    /// The provider's evidence as JSON.
    pub data: String,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

/// Where providers hand their evidence (a task writes it to the store).
pub type EvidenceSink = mpsc::UnboundedSender<Evidence>;

/// A provider built from the configuration, with what the rest of idgate must connect to it.
pub struct Configured {
    /// The provider, ready to take orders.
    pub provider: std::sync::Arc<dyn Provider>,
    /// For `kind = "app-push"`: the hub the HTTP API delivers callbacks to.
    pub app_push: Option<app_push::Callbacks>,
}

/// The provider the configuration names (reading its certificate and secret files); its
/// evidence of completed orders goes to `evidence`.
pub fn from_config(
    config: &crate::config::ProviderConfig,
    evidence: EvidenceSink,
) -> Result<Configured, SetupError> {
    use crate::config::ProviderKind;
    use std::sync::Arc;
    let only = |provider: Arc<dyn Provider>| Configured {
        provider,
        app_push: None,
    };
    Ok(match config.kind {
        ProviderKind::Simulator => only(Arc::new(simulator::Simulator::new(
            config.simulator.clone(),
        ))),
        ProviderKind::Bankid => {
            let bankid =
                bankid::BankId::new(&config.bankid)?.on_completion(move |call_id, completion| {
                    let Ok(data) = serde_json::to_string(&completion) else {
                        return;
                    };
                    let _ = evidence.send(Evidence {
                        call_id,
                        method: Method::Bankid,
                        data,
                    });
                });
            only(Arc::new(bankid))
        }
        ProviderKind::Freja => only(Arc::new(freja::Freja::new(&config.freja)?)),
        ProviderKind::AppPush => {
            let provider = app_push::AppPush::from_config(&config.app_push)?;
            let app_push = Some(provider.callbacks());
            Configured {
                provider: Arc::new(provider),
                app_push,
            }
        }
    })
}
