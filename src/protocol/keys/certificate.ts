/**
 * OpenSSH certificates (PROTOCOL.certkeys): checking one as sshd and ssh do (CA signature, type,
 * validity window, principals, critical options), and signing one as `ssh-keygen -s` does.
 * Time is an argument (`now`, in milliseconds since the epoch), never read from a clock.
 */
import { randomBytes } from "node:crypto"
import { signatureAlgorithms } from "./algorithms.js"
import {
  decodeCertificate,
  encodeCertificateToSign,
  FOREVER,
  type CertificateFields,
  type SshCertificate
} from "./certificateEncoding.js"
import { equalBytes } from "./keyEncoding.js"
import { KeyError } from "./errors.js"
import { addressInCidrList, isValidCidrList } from "./patterns.js"
import type { SshPrivateKey } from "./privateKey.js"
import { parsePublicKeyLine, parseSignatureBlob, verifySignature, type SshPublicKey } from "./publicKey.js"
import { SshWriter } from "../wire/writer.js"

export { decodeCertificate, FOREVER, type CertificateFields, type SshCertificate } from "./certificateEncoding.js"

export type CertificateProblem =
  | "bad-signature"
  | "untrusted-ca"
  | "ca-algorithm"
  | "wrong-type"
  | "not-yet-valid"
  | "expired"
  | "no-principals"
  | "wrong-principal"
  | "unknown-critical-option"
  | "source-address"

export type CertificateVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly problem: CertificateProblem; readonly message: string }

export interface CertificateCheck {
  /** What the certificate must be: a user certificate for auth, a host certificate for a server. */
  readonly certType: "user" | "host"
  /** Milliseconds since the epoch. */
  readonly now: number
  /** The user name or host name that must be among the principals (when given). */
  readonly principal?: string
  /**
   * Refuse certificates without principals. OpenSSH does for user certificates; for host
   * certificates an empty list means any host. Default: true for user, false for host.
   */
  readonly requirePrincipals?: boolean
  /** CA key blobs trusted for this purpose; absent means the caller checked the CA itself. */
  readonly trustedCAs?: ReadonlyArray<Uint8Array>
  /** Client address, for the source-address critical option. */
  readonly clientAddress?: string
  /** CA signature algorithms accepted; default OpenSSH's CASignatureAlgorithms (no ssh-rsa SHA-1). */
  readonly caSignatureAlgorithms?: ReadonlyArray<string>
}

/** OpenSSH's default CASignatureAlgorithms. */
export const DEFAULT_CA_SIGNATURE_ALGORITHMS: ReadonlyArray<string> = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
  "rsa-sha2-512",
  "rsa-sha2-256"
]

/** The critical options this implementation understands; any other makes a certificate unusable. */
const KNOWN_CRITICAL_OPTIONS = ["force-command", "source-address", "verify-required"]

const refuse = (problem: CertificateProblem, message: string): CertificateVerdict => ({ ok: false, problem, message })

function describe(cert: SshCertificate): string {
  return `certificate ${JSON.stringify(cert.keyId)} (serial ${cert.serial})`
}

/** Formats certificate seconds as ssh-keygen -L does, in UTC. */
export function formatCertificateTime(seconds: bigint): string {
  if (seconds === FOREVER) return "forever"
  if (seconds === 0n) return "always"
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.\d+Z$/, "Z")
}

/** Checks a certificate as sshd (user) or ssh (host) would; never throws. */
export function checkCertificate(cert: SshCertificate, check: CertificateCheck): CertificateVerdict {
  const what = describe(cert)
  if (check.trustedCAs !== undefined && !check.trustedCAs.some((ca) => equalBytes(ca, cert.signatureKey))) {
    return refuse("untrusted-ca", `${what} is signed by a CA that is not trusted here`)
  }
  let algorithm: string
  try {
    algorithm = parseSignatureBlob(cert.signature).algorithm
  } catch {
    return refuse("bad-signature", `${what} has a malformed CA signature`)
  }
  if (!(check.caSignatureAlgorithms ?? DEFAULT_CA_SIGNATURE_ALGORITHMS).includes(algorithm)) {
    return refuse("ca-algorithm", `${what} is signed with ${algorithm}, which is not an accepted CA signature algorithm`)
  }
  if (!verifySignature(cert.signatureKey, cert.signature, cert.signedData)) {
    return refuse("bad-signature", `${what}: the CA signature does not verify`)
  }
  if (cert.certType !== check.certType) {
    return refuse("wrong-type", `${what} is a ${cert.certType} certificate, not a ${check.certType} certificate`)
  }
  const now = BigInt(Math.floor(check.now / 1000))
  if (now < cert.validAfter) return refuse("not-yet-valid", `${what} is not valid before ${formatCertificateTime(cert.validAfter)}`)
  if (now >= cert.validBefore) return refuse("expired", `${what} expired at ${formatCertificateTime(cert.validBefore)}`)
  const requirePrincipals = check.requirePrincipals ?? check.certType === "user"
  if (cert.principals.length === 0) {
    if (requirePrincipals) return refuse("no-principals", `${what} lists no principals`)
  } else if (check.principal !== undefined && !cert.principals.includes(check.principal)) {
    return refuse("wrong-principal", `${what} is not valid for ${JSON.stringify(check.principal)} (principals: ${cert.principals.join(", ")})`)
  }
  for (const [name, value] of cert.criticalOptions) {
    if (!KNOWN_CRITICAL_OPTIONS.includes(name)) {
      return refuse("unknown-critical-option", `${what} has the critical option ${JSON.stringify(name)}, which is not supported`)
    }
    if (name === "source-address") {
      if (!isValidCidrList(value)) return refuse("source-address", `${what} has a malformed source-address ${JSON.stringify(value)}`)
      if (check.clientAddress !== undefined && !addressInCidrList(check.clientAddress, value)) {
        return refuse("source-address", `${what} is not valid from ${check.clientAddress} (source-address ${value})`)
      }
    }
  }
  return { ok: true }
}

/** The extensions ssh-keygen gives a user certificate by default. */
export const DEFAULT_USER_EXTENSIONS: ReadonlyArray<string> = [
  "permit-X11-forwarding",
  "permit-agent-forwarding",
  "permit-port-forwarding",
  "permit-pty",
  "permit-user-rc"
]

export interface SignCertificateOptions {
  readonly certType: "user" | "host"
  readonly keyId: string
  /** Empty: valid for every principal (ssh-keygen without -n). */
  readonly principals?: ReadonlyArray<string>
  readonly serial?: bigint
  /** Seconds since the epoch; default 0 ("always") and FOREVER. */
  readonly validAfter?: bigint
  readonly validBefore?: bigint
  readonly criticalOptions?: Readonly<Record<string, string>>
  /** Default DEFAULT_USER_EXTENSIONS for user certificates, none for host certificates. */
  readonly extensions?: Readonly<Record<string, string>>
  /** Default: the CA key's preferred algorithm (rsa-sha2-512 for RSA, as ssh-keygen). */
  readonly signatureAlgorithm?: string
  /** Default: 32 random bytes. */
  readonly nonce?: Uint8Array
}

/** Certifies `publicKey` with the CA key, as `ssh-keygen -s` does; the result is ready to write as `*-cert.pub`. */
export function signCertificate(ca: SshPrivateKey, publicKey: SshPublicKey | Uint8Array, options: SignCertificateOptions): SshCertificate {
  const key = publicKey instanceof Uint8Array ? publicKey : publicKey.certificate?.publicKey ?? publicKey.blob
  const defaultExtensions = options.certType === "user" ? Object.fromEntries(DEFAULT_USER_EXTENSIONS.map((e) => [e, ""])) : {}
  const fields: CertificateFields = {
    serial: options.serial ?? 0n,
    certType: options.certType,
    keyId: options.keyId,
    principals: options.principals ?? [],
    validAfter: options.validAfter ?? 0n,
    validBefore: options.validBefore ?? FOREVER,
    criticalOptions: new Map(Object.entries(options.criticalOptions ?? {})),
    extensions: new Map(Object.entries(options.extensions ?? defaultExtensions))
  }
  if (fields.validAfter >= fields.validBefore) throw new KeyError("corrupt", "a certificate's validity must end after it starts")
  const algorithm = options.signatureAlgorithm ?? signatureAlgorithms(ca.type)[0]
  if (algorithm === undefined) throw new KeyError("unsupported-key-type", `${ca.type} keys cannot sign certificates`)
  const toSign = encodeCertificateToSign(key, options.nonce ?? randomBytes(32), fields, ca.publicKey.blob)
  const signature = ca.sign(algorithm, toSign)
  return decodeCertificate(new SshWriter(toSign.length + signature.length + 8).raw(toSign).string(signature).finish())
}

/** Reads a `*-cert.pub` line; throws KeyError when it is not a certificate. */
export function parseCertificateLine(line: string): SshCertificate {
  const key = parsePublicKeyLine(line)
  if (key.certificate === undefined) throw new KeyError("unsupported-key-type", `${key.type} is a plain key, not a certificate`)
  return key.certificate
}
