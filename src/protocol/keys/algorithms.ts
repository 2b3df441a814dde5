/**
 * The SSH public key types this library knows, their curves and their signature algorithms.
 * Certificates (`*-cert-v01@openssh.com`) slot in here as further key types.
 */

export type HashName = "sha1" | "sha256" | "sha384" | "sha512"

export interface EcdsaCurve {
  /** The curve identifier inside SSH blobs (RFC 5656 §6.1). */
  readonly sshName: "nistp256" | "nistp384" | "nistp521"
  readonly jwkCurve: "P-256" | "P-384" | "P-521"
  /** node:crypto / OpenSSL curve name. */
  readonly nodeName: "prime256v1" | "secp384r1" | "secp521r1"
  readonly hash: HashName
  /** Field element size in bytes. */
  readonly size: number
  readonly bits: number
}

export const ecdsaCurves: ReadonlyArray<EcdsaCurve> = [
  { sshName: "nistp256", jwkCurve: "P-256", nodeName: "prime256v1", hash: "sha256", size: 32, bits: 256 },
  { sshName: "nistp384", jwkCurve: "P-384", nodeName: "secp384r1", hash: "sha384", size: 48, bits: 384 },
  { sshName: "nistp521", jwkCurve: "P-521", nodeName: "secp521r1", hash: "sha512", size: 66, bits: 521 }
]

export function curveBySshName(name: string): EcdsaCurve | undefined {
  return ecdsaCurves.find((c) => c.sshName === name)
}

export function curveByNodeName(name: string): EcdsaCurve | undefined {
  return ecdsaCurves.find((c) => c.nodeName === name)
}

export const SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
export const SK_ED25519 = "sk-ssh-ed25519@openssh.com"

/** RSA signature algorithms, strongest first (RFC 8332), with the hash each uses. */
const rsaAlgorithms: ReadonlyArray<readonly [string, HashName]> = [
  ["rsa-sha2-512", "sha512"],
  ["rsa-sha2-256", "sha256"],
  ["ssh-rsa", "sha1"]
]

const plainKeyTypes: ReadonlyArray<string> = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-dss",
  SK_ED25519,
  SK_ECDSA
]

/**
 * The signature algorithms a key of this type can produce, preferred first.
 * `signatureAlgorithms("ssh-rsa")` is `["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]`; an unknown type gives `[]`.
 */
export function signatureAlgorithms(keyType: string): ReadonlyArray<string> {
  if (keyType === "ssh-rsa") return rsaAlgorithms.map(([name]) => name)
  return plainKeyTypes.includes(keyType) ? [keyType] : []
}

/**
 * The key type that produces signatures of this algorithm: `rsa-sha2-256` → `ssh-rsa`.
 * Every other algorithm is named after its key type and comes back unchanged.
 */
export function keyTypeOfAlgorithm(algorithm: string): string {
  return algorithm === "rsa-sha2-256" || algorithm === "rsa-sha2-512" ? "ssh-rsa" : algorithm
}

/** The hash an RSA signature algorithm uses, or undefined when it is not one. */
export function rsaHash(algorithm: string): HashName | undefined {
  return rsaAlgorithms.find(([name]) => name === algorithm)?.[1]
}
