"""Who is who: verified phone numbers, one-time codes, the civil-servant roster, account links.

Rules over a session (keyword-only, never committing). A phone number is never stored or
compared in plaintext: rows keep it encrypted (PiiVault) next to its keyed hash, and codes
are kept only as keyed hashes bound to the member and channel account that asked.

The parts: `tables` (the rows and one-row lookups), `codes` (sending and checking one-time
codes), `phones` (recording a verified number, merging two members) and `roster` (the
civil-servant status). The audit log is models.audit's; AuditLog and record_audit are
re-exported here for the modules that import them from identity.
"""

from __future__ import annotations

from models.audit import AuditLog, record_audit
from models.identity.codes import (
    CODE_TTL,
    DEFAULT_LIMITS,
    HOUR,
    LOCK_TIME,
    MAX_CHECKS,
    MAX_SENDS,
    MAX_WRONG_CODES_HOUR,
    RESEND_COOLDOWN,
    IssuedCode,
    Refusal,
    VerificationRefused,
    check_code,
    close_challenges,
    get_challenge,
    issue_code,
    new_code,
    purge_otp_history,
    record_refused_send,
    sms_inbox_key,
    sms_inbox_prefix,
    wrong_codes_wait,
)
from models.identity.phones import (
    Outcome,
    VerificationResult,
    linked_accounts,
    merge_members,
    phone_subject,
    record_verified_phone,
)
from models.identity.roster import sync_civil_servant
from models.identity.tables import (
    CLOSED,
    LOCKED,
    PENDING,
    VERIFIED,
    CivilServant,
    OtpChallenge,
    VerifiedPhone,
    find_phone_owner,
    get_civil_servant,
    get_verified_phone,
)
from models.otp_limits import OtpLimits, OtpSend

__all__ = [
    "CLOSED",
    "CODE_TTL",
    "DEFAULT_LIMITS",
    "HOUR",
    "LOCKED",
    "LOCK_TIME",
    "MAX_CHECKS",
    "MAX_SENDS",
    "MAX_WRONG_CODES_HOUR",
    "PENDING",
    "RESEND_COOLDOWN",
    "VERIFIED",
    "AuditLog",
    "CivilServant",
    "IssuedCode",
    "OtpChallenge",
    "OtpLimits",
    "OtpSend",
    "Outcome",
    "Refusal",
    "VerificationRefused",
    "VerificationResult",
    "VerifiedPhone",
    "check_code",
    "close_challenges",
    "find_phone_owner",
    "get_challenge",
    "get_civil_servant",
    "get_verified_phone",
    "issue_code",
    "linked_accounts",
    "merge_members",
    "new_code",
    "phone_subject",
    "purge_otp_history",
    "record_audit",
    "record_refused_send",
    "record_verified_phone",
    "sms_inbox_key",
    "sms_inbox_prefix",
    "sync_civil_servant",
    "wrong_codes_wait",
]
