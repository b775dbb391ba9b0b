"""Credentials for real deployments: TLS certificates for the SuperLink and learner keys.

``certs`` makes a private CA and the server certificate it signs; ``keys`` makes learner
key pairs (Flower SuperNode authentication) and keeps the allow-list the server trusts.
Neither imports Flower: both speak the file formats Flower 1.41 reads.
"""

from fedpilot.security.certs import CertificatePaths, check_certificates, init_certificates
from fedpilot.security.keys import (
    AuthorizedLearner,
    LearnerKeyPaths,
    add_to_allow_list,
    generate_learner_keys,
    load_allow_list,
    openssh_public_key,
    public_key_fingerprint,
    public_key_for_flower,
    read_public_key_file,
)

__all__ = [
    "AuthorizedLearner",
    "CertificatePaths",
    "LearnerKeyPaths",
    "add_to_allow_list",
    "check_certificates",
    "generate_learner_keys",
    "init_certificates",
    "load_allow_list",
    "openssh_public_key",
    "public_key_fingerprint",
    "public_key_for_flower",
    "read_public_key_file",
]
