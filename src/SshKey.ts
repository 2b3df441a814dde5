/**
 * Keys: parsing every supported format, generation, fingerprints, certificates, known_hosts and
 * authorized_keys checks. Thin re-exports of the core, so applications import one module.
 */
export { parsePrivateKey, generatePrivateKey, encodeOpenSSHPrivateKey } from "./protocol/keys/privateKey.js"
export type { SshPrivateKey } from "./protocol/keys/privateKey.js"
export {
  fingerprint,
  formatPublicKeyLine,
  parsePublicKeyBlob,
  parsePublicKeyLine,
  signatureAlgorithms,
  verifySignature
} from "./protocol/keys/publicKey.js"
export type { SshPublicKey } from "./protocol/keys/publicKey.js"
export { encodePublicKeyPem, parsePublicKey } from "./protocol/keys/publicKeyFile.js"
export { encodeRfc4716 } from "./protocol/keys/rfc4716.js"
export { parseKey, toParsedKey } from "./protocol/keys/parsedKey.js"
export type { ParsedKey } from "./protocol/keys/parsedKey.js"
export { KeyError } from "./protocol/keys/errors.js"
export {
  certAuthorityLine,
  checkKnownHost,
  checkKnownHostCertificate,
  hashHostName,
  knownHostsLine,
  parseKnownHosts
} from "./protocol/keys/knownHosts.js"
export {
  checkCertificate,
  decodeCertificate,
  DEFAULT_USER_EXTENSIONS,
  FOREVER,
  parseCertificateLine,
  signCertificate
} from "./protocol/keys/certificate.js"
export type { CertificateCheck, CertificateProblem, CertificateVerdict, SignCertificateOptions, SshCertificate } from "./protocol/keys/certificate.js"
export { parseValidityInterval } from "./protocol/keys/certificateValidity.js"
export { authorizeKey, parseAuthorizedKeyLine, parseAuthorizedKeys } from "./protocol/keys/authorizedKeys.js"
export type { AuthorizedKeyEntry, AuthorizedKeyVerdict, AuthorizeRequest, Restrictions } from "./protocol/keys/authorizedKeys.js"
