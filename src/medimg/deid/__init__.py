"""De-identification of DICOM data sets: DICOM PS3.15 Annex E with an audit trail.

* :func:`deidentify` de-identifies a folder into another (resumable, atomic outputs
  that never overwrite one another, quarantine for burned-in annotation, inputs that are not
  whole refused) and writes a hash-chained, HMAC-signed audit trail without PHI; in this process,
  or on worker processes through :func:`medimg.pipeline.deid.deidentify`.
* :func:`verify` searches every output element for any identifying value of the inputs.
* :class:`Deidentifier` applies Table E.1-1 (:func:`load_profile`) to one pydicom data set.
* :class:`Key` derives UIDs, pseudonyms and date shifts from a secret (:func:`load_key`,
  :func:`generate_key_file`).

See ``docs/deid.md``.
"""

from __future__ import annotations

from medimg.deid.audit import AuditTrail, ChainCheck, check_chain, head_path, read_records
from medimg.deid.engine import DatasetResult, Deidentifier, quarantine_reason
from medimg.deid.keys import Key, generate_key_file, load_key
from medimg.deid.profile import Options, PrivateTag, Profile, Rule, load_profile
from medimg.deid.run import AUDIT_NAME, HEAD_NAME, DeidReport, deidentify, deidentify_file
from medimg.deid.verify import Finding, VerifyReport, verify

__all__ = [
    "deidentify", "deidentify_file", "DeidReport", "AUDIT_NAME", "HEAD_NAME", "verify", "VerifyReport", "Finding",
    "Deidentifier", "DatasetResult", "quarantine_reason", "Key", "load_key", "generate_key_file",
    "Options", "PrivateTag", "Profile", "Rule", "load_profile", "AuditTrail", "ChainCheck", "check_chain",
    "head_path", "read_records",
]
