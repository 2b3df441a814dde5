/**
 * The SSH public key types this library knows, their curves and their signature algorithms,
 * and the OpenSSH certificate types (`*-cert-v01@openssh.com`, PROTOCOL.certkeys) built on them.
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

const CERT_SUFFIX = "-cert-v01@openssh.com"

/** Certificate key type → the key type it certifies. */
const certKeyTypes: ReadonlyMap<string, string> = new Map([
  ["ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519"],
  ["ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp256"],
  ["ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp384"],
  ["ecdsa-sha2-nistp521-cert-v01@openssh.com", "ecdsa-sha2-nistp521"],
  ["ssh-rsa-cert-v01@openssh.com", "ssh-rsa"],
  ["ssh-dss-cert-v01@openssh.com", "ssh-dss"],
  ["sk-ssh-ed25519-cert-v01@openssh.com", SK_ED25519],
  ["sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", SK_ECDSA]
])

/** Whether this key type is an OpenSSH certificate. */
export function isCertificateType(keyType: string): boolean {
  return certKeyTypes.has(keyType)
}

/** The key type a certificate type certifies (`ssh-ed25519-cert-v01@openssh.com` → `ssh-ed25519`), or undefined. */
export function certifiedKeyType(certType: string): string | undefined {
  return certKeyTypes.get(certType)
}

/** The certificate type for a plain key type, or undefined when there is none. */
export function certificateTypeOf(keyType: string): string | undefined {
  for (const [cert, plain] of certKeyTypes) if (plain === keyType) return cert
  return undefined
}

/** `rsa-sha2-512` → `rsa-sha2-512-cert-v01@openssh.com`: the name a certificate signs with in kex and userauth. */
export function certificateAlgorithm(plainAlgorithm: string): string {
  const sk = plainAlgorithm === SK_ED25519 || plainAlgorithm === SK_ECDSA
  return sk ? plainAlgorithm.replace("@openssh.com", CERT_SUFFIX) : plainAlgorithm + CERT_SUFFIX
}

/**
 * The plain signature algorithm behind a certificate algorithm (`rsa-sha2-256-cert-v01@openssh.com`
 * → `rsa-sha2-256`): certificates sign in their key's plain signature format. Undefined for a
 * name that is not a certificate algorithm.
 */
export function plainAlgorithmOfCertificate(certAlgorithm: string): string | undefined {
  if (!certAlgorithm.endsWith(CERT_SUFFIX)) return undefined
  const plain = certAlgorithm.slice(0, -CERT_SUFFIX.length)
  if (plain === "sk-ssh-ed25519" || plain === "sk-ecdsa-sha2-nistp256") return `${plain}@openssh.com`
  return [...rsaAlgorithms.map(([n]) => n), ...plainKeyTypes].includes(plain) ? plain : undefined
}

/**
 * The signature algorithms a key of this type can produce, preferred first.
 * `signatureAlgorithms("ssh-rsa")` is `["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]`; a certificate
 * type gives the certificate algorithms (`rsa-sha2-512-cert-v01@openssh.com`, ...); an unknown type gives `[]`.
 */
export function signatureAlgorithms(keyType: string): ReadonlyArray<string> {
  const certified = certKeyTypes.get(keyType)
  if (certified !== undefined) return signatureAlgorithms(certified).map(certificateAlgorithm)
  if (keyType === "ssh-rsa") return rsaAlgorithms.map(([name]) => name)
  return plainKeyTypes.includes(keyType) ? [keyType] : []
}

/**
 * The key type that produces signatures of this algorithm: `rsa-sha2-256` → `ssh-rsa`,
 * `rsa-sha2-512-cert-v01@openssh.com` → `ssh-rsa-cert-v01@openssh.com`.
 * Every other algorithm is named after its key type and comes back unchanged.
 */
export function keyTypeOfAlgorithm(algorithm: string): string {
  if (algorithm === "rsa-sha2-256" || algorithm === "rsa-sha2-512") return "ssh-rsa"
  if (algorithm === "rsa-sha2-256-cert-v01@openssh.com" || algorithm === "rsa-sha2-512-cert-v01@openssh.com") {
    return "ssh-rsa-cert-v01@openssh.com"
  }
  return algorithm
}

/** The hash an RSA signature algorithm uses, or undefined when it is not one. */
export function rsaHash(algorithm: string): HashName | undefined {
  return rsaAlgorithms.find(([name]) => name === algorithm)?.[1]
}
