/**
 * Keys: parsing every supported format, generation, fingerprints and known_hosts checks.
 * Thin re-exports of the core, so applications import one module.
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
export { KeyError } from "./protocol/keys/errors.js"
export { checkKnownHost, knownHostsLine, parseKnownHosts } from "./protocol/keys/knownHosts.js"
