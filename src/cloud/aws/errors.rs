//! AWS error codes mapped to the [`CloudError`]s the decision core understands.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cloud::CloudError;

/// What an AWS error code means to the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The offering has no capacity now: mark it unavailable, try others.
    Capacity,
    /// A service quota: retrying elsewhere will not help until it is raised.
    Quota,
    Unauthorized,
    Throttled,
    NotFound,
    Invalid,
    Other,
}

/// EC2 capacity codes (CreateFleet `Errors[].ErrorCode` and RunInstances errors).
const CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "UnfulfillableCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
];

const QUOTA: &[&str] = &[
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "InstanceLimitExceeded",
    "MaxFleetCountExceeded",
    "LaunchTemplateLimitExceeded",
];

const THROTTLED: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "AWS.SimpleQueueService.RequestThrottled",
];

const UNAUTHORIZED: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
];

/// Classifies an AWS error code.
pub fn classify(code: &str) -> ErrorClass {
    if CAPACITY.contains(&code) {
        ErrorClass::Capacity
    } else if QUOTA.contains(&code) {
        ErrorClass::Quota
    } else if THROTTLED.contains(&code) {
        ErrorClass::Throttled
    } else if UNAUTHORIZED.contains(&code) {
        ErrorClass::Unauthorized
    } else if code.ends_with(".NotFound")
        || code.ends_with("NotFoundException")
        || code == "AWS.SimpleQueueService.NonExistentQueue"
        || code == "QueueDoesNotExist"
    {
        ErrorClass::NotFound
    } else if code.starts_with("Invalid")
        || code.starts_with("Missing")
        || code == "ValidationError"
        || code == "Unsupported"
    {
        ErrorClass::Invalid
    } else {
        ErrorClass::Other
    }
}

/// Builds the [`CloudError`] for an error code outside a capacity context (capacity
/// errors need the failed offerings, which only the caller knows: they become
/// `Other` here).
pub fn from_code(operation: &str, code: &str, message: &str) -> CloudError {
    let message = format!("{code}: {message}");
    let operation = operation.to_string();
    match classify(code) {
        ErrorClass::Quota => CloudError::QuotaExceeded { message },
        ErrorClass::Throttled => CloudError::Throttled { operation },
        ErrorClass::Unauthorized => CloudError::Unauthorized {
            action: super::iam_action(&operation).to_string(),
            message,
        },
        ErrorClass::Invalid | ErrorClass::NotFound => CloudError::Invalid { operation, message },
        ErrorClass::Capacity | ErrorClass::Other => CloudError::Other { operation, message },
    }
}

/// The code of a service error; `None` for timeouts, connection and parse failures.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Maps an SDK error of `operation` (an [`super::ops`] name) to a [`CloudError`].
pub fn map<E, R>(operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match code_of(&err) {
        Some(code) => {
            let code = code.to_string();
            let message = err.message().unwrap_or_default().to_string();
            from_code(operation, &code, &message)
        }
        None => CloudError::Other {
            operation: operation.to_string(),
            message: DisplayErrorContext(&err).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fall_in_the_documented_classes() {
        assert_eq!(
            classify("InsufficientInstanceCapacity"),
            ErrorClass::Capacity
        );
        assert_eq!(classify("UnfulfillableCapacity"), ErrorClass::Capacity);
        assert_eq!(classify("VcpuLimitExceeded"), ErrorClass::Quota);
        assert_eq!(classify("MaxSpotInstanceCountExceeded"), ErrorClass::Quota);
        assert_eq!(classify("RequestLimitExceeded"), ErrorClass::Throttled);
        assert_eq!(classify("UnauthorizedOperation"), ErrorClass::Unauthorized);
        assert_eq!(classify("InvalidInstanceID.NotFound"), ErrorClass::NotFound);
        assert_eq!(classify("InvalidParameterValue"), ErrorClass::Invalid);
        assert_eq!(classify("ValidationError"), ErrorClass::Invalid);
        assert_eq!(classify("InternalError"), ErrorClass::Other);
    }

    #[test]
    fn unauthorized_names_the_missing_action() {
        let e = from_code("ec2:CreateFleet", "UnauthorizedOperation", "denied");
        match e {
            CloudError::Unauthorized { action, message } => {
                assert_eq!(action, "ec2:CreateFleet");
                assert!(message.contains("denied"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let q = from_code("ec2:CreateFleet", "VcpuLimitExceeded", "limit 32");
        assert!(matches!(q, CloudError::QuotaExceeded { message } if message.contains("limit 32")));
    }
}
