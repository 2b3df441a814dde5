/**
 * OpenSSH certificates, known_hosts @cert-authority and authorized_keys decisions, in memory.
 */
import { describe, expect, it } from "vitest"
import { certificateAlgorithm, keyTypeOfAlgorithm, plainAlgorithmOfCertificate, signatureAlgorithms } from "../../src/protocol/keys/algorithms.js"
import { authorizeKey, parseAuthorizedKeyLine, parseAuthorizedKeys } from "../../src/protocol/keys/authorizedKeys.js"
import { checkCertificate, decodeCertificate, FOREVER, parseCertificateLine, signCertificate } from "../../src/protocol/keys/certificate.js"
import { parseValidityInterval } from "../../src/protocol/keys/certificateValidity.js"
import { KeyError, type KeyErrorReason } from "../../src/protocol/keys/errors.js"
import {
  certAuthorityLine,
  checkKnownHost,
  checkKnownHostCertificate,
  hashHostName,
  hostMatches,
  knownHostsLine,
  parseKnownHosts
} from "../../src/protocol/keys/knownHosts.js"
import { addressInCidr, matchPatternList } from "../../src/protocol/keys/patterns.js"
import { generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { formatPublicKeyLine, parsePublicKeyBlob, verifySignature } from "../../src/protocol/keys/publicKey.js"
import { concatBytes } from "../../src/protocol/wire/writer.js"

function reasonOf(f: () => unknown): KeyErrorReason {
  try {
    f()
  } catch (e) {
    if (e instanceof KeyError) return e.reason
    throw new Error(`expected a KeyError, got ${String(e)}`)
  }
  throw new Error("expected a KeyError, nothing was thrown")
}

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0)
const sec = (ms: number) => BigInt(Math.floor(ms / 1000))
const DAY = 86_400_000

const ca = generatePrivateKey("ed25519", { comment: "ca" })
const otherCa = generatePrivateKey("ecdsa")
const user = generatePrivateKey("ed25519", { comment: "alice@laptop" })

function userCert(options: Partial<Parameters<typeof signCertificate>[2]> = {}, signer = ca) {
  return signCertificate(signer, user.publicKey, {
    certType: "user",
    keyId: "alice",
    principals: ["alice"],
    validAfter: sec(NOW - DAY),
    validBefore: sec(NOW + DAY),
    ...options
  })
}

describe("certificate algorithms", () => {
  it("maps certificate algorithms to key types and plain signature formats", () => {
    expect(signatureAlgorithms("ssh-rsa-cert-v01@openssh.com")).toEqual([
      "rsa-sha2-512-cert-v01@openssh.com",
      "rsa-sha2-256-cert-v01@openssh.com",
      "ssh-rsa-cert-v01@openssh.com"
    ])
    expect(keyTypeOfAlgorithm("rsa-sha2-256-cert-v01@openssh.com")).toBe("ssh-rsa-cert-v01@openssh.com")
    expect(plainAlgorithmOfCertificate("rsa-sha2-256-cert-v01@openssh.com")).toBe("rsa-sha2-256")
    expect(plainAlgorithmOfCertificate("sk-ssh-ed25519-cert-v01@openssh.com")).toBe("sk-ssh-ed25519@openssh.com")
    expect(certificateAlgorithm("sk-ecdsa-sha2-nistp256@openssh.com")).toBe("sk-ecdsa-sha2-nistp256-cert-v01@openssh.com")
    expect(plainAlgorithmOfCertificate("ssh-ed25519")).toBeUndefined()
  })
})

describe("certificates", () => {
  it("signs a certificate that reads back with every field", () => {
    const cert = userCert({ serial: 42n, criticalOptions: { "force-command": "uptime", "source-address": "10.0.0.0/8" } })
    const line = formatPublicKeyLine(parsePublicKeyBlob(cert.blob), "alice@laptop")
    const back = parseCertificateLine(line)
    expect(back.type).toBe("ssh-ed25519-cert-v01@openssh.com")
    expect(back.keyType).toBe("ssh-ed25519")
    expect(back.publicKey).toEqual(user.publicKey.blob)
    expect(back.signatureKey).toEqual(ca.publicKey.blob)
    expect(back.serial).toBe(42n)
    expect(back.principals).toEqual(["alice"])
    expect(back.criticalOptions.get("force-command")).toBe("uptime")
    expect([...back.extensions.keys()]).toEqual([
      "permit-X11-forwarding",
      "permit-agent-forwarding",
      "permit-port-forwarding",
      "permit-pty",
      "permit-user-rc"
    ])
    expect(checkCertificate(back, { certType: "user", now: NOW, principal: "alice", clientAddress: "10.1.2.3" })).toEqual({ ok: true })
  })

  it("certifies every key type with every CA type", () => {
    const keys = [generatePrivateKey("ecdsa", { bits: 384 }), generatePrivateKey("rsa", { bits: 2048 }), user]
    for (const signer of [ca, otherCa, generatePrivateKey("rsa", { bits: 2048 })]) {
      for (const key of keys) {
        const cert = signCertificate(signer, key.publicKey, { certType: "host", keyId: "h", principals: ["example.com"] })
        expect(checkCertificate(cert, { certType: "host", now: NOW, principal: "example.com" })).toEqual({ ok: true })
        // the certificate signs as its key, under the certificate algorithm names
        for (const plain of signatureAlgorithms(key.type)) {
          const data = Uint8Array.of(1, 2, 3)
          const signature = key.sign(plain, data)
          expect(verifySignature(cert.blob, signature, data, certificateAlgorithm(plain))).toBe(true)
          expect(verifySignature(cert.blob, signature, data, plain)).toBe(false)
        }
      }
    }
  })

  it("refuses expired, early, wrong-type, wrong-principal, untrusted and tampered certificates", () => {
    const problem = (cert: ReturnType<typeof userCert>, extra: Partial<Parameters<typeof checkCertificate>[1]> = {}) => {
      const v = checkCertificate(cert, { certType: "user", now: NOW, principal: "alice", ...extra })
      return v.ok ? "ok" : v.problem
    }
    expect(problem(userCert({ validBefore: sec(NOW - 1000) }))).toBe("expired")
    expect(problem(userCert({ validAfter: sec(NOW + DAY), validBefore: FOREVER }))).toBe("not-yet-valid")
    expect(problem(userCert({ certType: "host" }))).toBe("wrong-type")
    expect(problem(userCert(), { principal: "mallory" })).toBe("wrong-principal")
    expect(problem(userCert({ principals: [] }))).toBe("no-principals")
    expect(problem(userCert(), { trustedCAs: [otherCa.publicKey.blob] })).toBe("untrusted-ca")
    expect(problem(userCert({ criticalOptions: { "no-such-option": "" } }))).toBe("unknown-critical-option")
    expect(problem(userCert({ criticalOptions: { "source-address": "192.168.0.0/16" } }), { clientAddress: "10.0.0.1" })).toBe("source-address")
    expect(problem(userCert({ criticalOptions: { "source-address": "not-an-address" } }))).toBe("source-address")
    const rsaCa = generatePrivateKey("rsa", { bits: 2048 })
    expect(problem(userCert({ signatureAlgorithm: "ssh-rsa" }, rsaCa))).toBe("ca-algorithm")
    // flip a byte of the key id: the CA signature no longer verifies
    const cert = userCert()
    const tampered = Uint8Array.from(cert.blob)
    const at = Buffer.from(tampered).indexOf(Buffer.from("alice"))
    tampered[at] ^= 1
    expect(problem(decodeCertificate(tampered))).toBe("bad-signature")
  })

  it("refuses malformed certificate blobs with a typed reason", () => {
    const blob = userCert({ criticalOptions: { "force-command": "x" } }).blob
    for (let n = 0; n < blob.length; n++) expect(reasonOf(() => decodeCertificate(blob.subarray(0, n)))).toMatch(/corrupt|unsupported-key-type/)
    expect(reasonOf(() => decodeCertificate(concatBytes(blob, Uint8Array.of(0))))).toBe("corrupt")
    // a certificate as CA key
    const nested = signCertificate(ca, user.publicKey, { certType: "user", keyId: "x" })
    expect(reasonOf(() => parsePublicKeyBlob(concatBytes(nested.blob.subarray(0, nested.signedData.length - ca.publicKey.blob.length - 4))))).toBe("corrupt")
    let seed = 11
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff)
    for (let i = 0; i < 300; i++) {
      const fuzzed = Uint8Array.from(blob)
      for (let j = 0; j < 3; j++) fuzzed[next() % fuzzed.length] = next() & 0xff
      try {
        const c = decodeCertificate(fuzzed)
        expect(typeof checkCertificate(c, { certType: "user", now: NOW }).ok).toBe("boolean")
      } catch (e) {
        expect(e).toBeInstanceOf(KeyError)
      }
    }
  })

  it("parses ssh-keygen validity intervals", () => {
    const now = NOW
    expect(parseValidityInterval("+52w", now)).toEqual({ validAfter: sec(now), validBefore: sec(now) + 52n * 7n * 86400n })
    expect(parseValidityInterval("-1d:+1w", now)).toEqual({ validAfter: sec(now) - 86400n, validBefore: sec(now) + 7n * 86400n })
    expect(parseValidityInterval("always:forever", now)).toEqual({ validAfter: 0n, validBefore: FOREVER })
    expect(parseValidityInterval("20250101Z:20270101123000Z", now)).toEqual({
      validAfter: sec(Date.UTC(2025, 0, 1)),
      validBefore: sec(Date.UTC(2027, 0, 1, 12, 30))
    })
    expect(parseValidityInterval("-1h30m:0x7fffffff", now).validAfter).toBe(sec(now) - 5400n)
    for (const bad of ["", "+", "tomorrow", "20251301", "+1y", "always", "forever:always", "+1d:-1d", "20250230:forever"]) {
      expect(reasonOf(() => parseValidityInterval(bad, now))).toBe("unsupported-format")
    }
  })
})

describe("patterns", () => {
  it("matches wildcards, negations and CIDR blocks", () => {
    expect(matchPatternList("*.example.com,!bad.example.com", "good.example.com")).toBe("match")
    expect(matchPatternList("*.example.com,!bad.example.com", "bad.example.com")).toBe("negated")
    expect(matchPatternList("host?", "HOST1")).toBe("match")
    expect(addressInCidr("10.1.2.3", "10.0.0.0/8")).toBe(true)
    expect(addressInCidr("11.1.2.3", "10.0.0.0/8")).toBe(false)
    expect(addressInCidr("::ffff:10.1.2.3", "10.0.0.0/8")).toBe(true)
    expect(addressInCidr("2001:db8::1", "2001:db8::/32")).toBe(true)
    expect(addressInCidr("2001:db9::1", "2001:db8::/32")).toBe(false)
    expect(addressInCidr("::1", "::1")).toBe(true)
    for (const bad of ["10.0.0.0/33", "10.0.0/8", "1::2::3", "x", "10.0.0.0/"]) expect(addressInCidr("10.0.0.1", bad)).toBe(false)
  })
})

describe("known_hosts with certificates", () => {
  const host = generatePrivateKey("ecdsa")
  const hostCert = (options: Partial<Parameters<typeof signCertificate>[2]> = {}) =>
    signCertificate(ca, host.publicKey, { certType: "host", keyId: "srv", principals: ["srv.example.com"], ...options })
  const caLine = certAuthorityLine("*.example.com", ca.type, ca.publicKey.blob)

  it("accepts a valid certificate from a CA trusted for the host", () => {
    const entries = parseKnownHosts(`# hosts\n${caLine}\n`)
    expect(checkKnownHostCertificate(entries, "srv.example.com", 22, hostCert(), NOW)._tag).toBe("Match")
  })

  it("refuses invalid certificates, other CAs and revoked keys, and falls back to plain keys", () => {
    const entries = parseKnownHosts(`${caLine}\n`)
    const verdict = checkKnownHostCertificate(entries, "srv.example.com", 22, hostCert({ principals: ["other.example.com"] }), NOW)
    expect(verdict._tag === "CertificateInvalid" && verdict.problem).toBe("wrong-principal")
    const expired = checkKnownHostCertificate(entries, "srv.example.com", 22, hostCert({ validBefore: sec(NOW - 1) }), NOW)
    expect(expired._tag === "CertificateInvalid" && expired.problem).toBe("expired")
    const user = checkKnownHostCertificate(entries, "srv.example.com", 22, hostCert({ certType: "user" }), NOW)
    expect(user._tag === "CertificateInvalid" && user.problem).toBe("wrong-type")
    // the CA is not trusted for this host name: the certified key is checked as a plain key
    expect(checkKnownHostCertificate(entries, "srv.elsewhere.org", 22, hostCert(), NOW)._tag).toBe("Unknown")
    const revoked = parseKnownHosts(`${caLine}\n@revoked * ${formatPublicKeyLine(host.publicKey)}\n`)
    expect(checkKnownHostCertificate(revoked, "srv.example.com", 22, hostCert(), NOW)._tag).toBe("Revoked")
    const revokedCa = parseKnownHosts(`${caLine}\n@revoked * ${formatPublicKeyLine(ca.publicKey)}\n`)
    expect(checkKnownHostCertificate(revokedCa, "srv.example.com", 22, hostCert(), NOW)._tag).toBe("Revoked")
    const plain = parseKnownHosts(`${knownHostsLine("srv.elsewhere.org", 2222, host.type, host.publicKey.blob, true)}\n`)
    expect(checkKnownHostCertificate(plain, "srv.elsewhere.org", 2222, hostCert(), NOW)._tag).toBe("Match")
  })

  it("hashes host names as ssh does, and matches them only for the same name and port", () => {
    const salt = Buffer.from("0123456789abcdefghij")
    expect(hashHostName("example.com", salt)).toBe(hashHostName("example.com", salt))
    const line = knownHostsLine("example.com", 2222, host.type, host.publicKey.blob, true)
    expect(line).toMatch(/^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ecdsa-sha2-nistp256 /)
    const entries = parseKnownHosts(line)
    expect(hostMatches(entries[0]!.hosts, "[example.com]:2222")).toBe(true)
    expect(hostMatches(entries[0]!.hosts, "example.com")).toBe(false)
    expect(checkKnownHost(entries, "example.com", 2222, host.type, host.publicKey.blob)._tag).toBe("Match")
    expect(checkKnownHost(entries, "example.com", 2222, user.type, user.publicKey.blob)._tag).toBe("Unknown")
    expect(checkKnownHost(entries, "example.com", 2222, host.type, otherCa.publicKey.blob)._tag).toBe("Mismatch")
  })
})

describe("authorized_keys", () => {
  const userLine = formatPublicKeyLine(user.publicKey)
  const caKeyLine = formatPublicKeyLine(ca.publicKey)
  const allow = (text: string, request: Partial<Parameters<typeof authorizeKey>[1]> = {}) =>
    authorizeKey(parseAuthorizedKeys(text).entries, { username: "alice", key: user.publicKey.blob, now: NOW, clientAddress: "10.1.2.3", ...request })

  it("parses options, quoted values and escapes", () => {
    const entry = parseAuthorizedKeyLine(
      `restrict,pty,command="echo \\"hi\\", there",from="10.0.0.0/8,!10.9.9.9",environment="A=b c",permitopen="db:5432",permitlisten="8080",expiry-time="20300101",tunnel="3",no-touch-required ${userLine}`
    )
    expect(entry.options).toMatchObject({
      restrict: true,
      pty: true,
      command: 'echo "hi", there',
      from: "10.0.0.0/8,!10.9.9.9",
      environment: ["A=b c"],
      permitOpen: ["db:5432"],
      permitListen: ["8080"],
      tunnel: 3,
      noTouchRequired: true
    })
    expect(entry.key.comment).toBe("alice@laptop")
  })

  it("allows a listed key with its restrictions", () => {
    const v = allow(`# keys\nrestrict,pty,command="uptime" ${userLine}\n`)
    expect(v._tag).toBe("Allowed")
    if (v._tag !== "Allowed") return
    expect(v.entry?.line).toBe(2)
    expect(v.restrictions).toMatchObject({ command: "uptime", pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false })
    const open = allow(`${userLine}\n`)
    expect(open._tag === "Allowed" && open.restrictions).toMatchObject({ pty: true, portForwarding: true })
  })

  it("refuses unknown keys, foreign addresses and expired lines", () => {
    expect(allow(`${caKeyLine}\n`)).toMatchObject({ _tag: "Refused", reason: "no-matching-key" })
    expect(allow(`from="192.168.*" ${userLine}\n`)).toMatchObject({ _tag: "Refused", reason: "from" })
    expect(allow(`from="10.0.0.0/8,!10.1.2.3" ${userLine}\n`)).toMatchObject({ _tag: "Refused", reason: "from" })
    expect(allow(`from="*.example.com" ${userLine}\n`, { clientHostname: "pc.example.com" })._tag).toBe("Allowed")
    expect(allow(`expiry-time="20250101" ${userLine}\n`)).toMatchObject({ _tag: "Refused", reason: "expired" })
    // a cert-authority line does not authorize its CA key itself
    expect(allow(`cert-authority ${userLine}\n`)).toMatchObject({ _tag: "Refused", reason: "no-matching-key" })
  })

  it("allows certificates from a cert-authority line or a trusted CA, with principals and narrowed permissions", () => {
    const cert = userCert({ extensions: { "permit-pty": "" }, criticalOptions: { "force-command": "id" } })
    const v = allow(`cert-authority ${caKeyLine}\n`, { key: cert.blob })
    expect(v._tag).toBe("Allowed")
    expect(v._tag === "Allowed" && v.restrictions).toMatchObject({ command: "id", pty: true, portForwarding: false, agentForwarding: false })
    expect(allow(`cert-authority,principals="ops,admins" ${caKeyLine}\n`, { key: userCert({ principals: ["admins"] }).blob })._tag).toBe("Allowed")
    expect(allow(`cert-authority,principals="ops" ${caKeyLine}\n`, { key: userCert({ principals: ["admins"] }).blob })).toMatchObject({
      _tag: "Refused",
      reason: "principal"
    })
    expect(allow(`cert-authority ${caKeyLine}\n`, { key: userCert({ principals: ["bob"] }).blob })).toMatchObject({ _tag: "Refused", reason: "certificate" })
    expect(allow(`cert-authority ${caKeyLine}\n`, { key: userCert({ validBefore: sec(NOW - 10) }).blob })).toMatchObject({
      _tag: "Refused",
      reason: "certificate"
    })
    expect(allow(`cert-authority ${formatPublicKeyLine(otherCa.publicKey)}\n`, { key: cert.blob })).toMatchObject({ _tag: "Refused" })
    expect(allow("", { key: userCert().blob, trustedUserCAKeys: [ca.publicKey.blob] })._tag).toBe("Allowed")
    expect(allow("", { key: userCert().blob, trustedUserCAKeys: [otherCa.publicKey.blob] })).toMatchObject({ _tag: "Refused" })
    expect(allow(`command="other" ${userLine}\n`, { key: cert.blob })).toMatchObject({ _tag: "Refused", reason: "conflicting-commands" })
  })

  it("reports malformed lines and keeps the good ones", () => {
    const bad = [
      `unknown-option ${userLine}`,
      `command="unterminated ${userLine}`,
      `command=unquoted ${userLine}`,
      `environment="=x" ${userLine}`,
      `permitopen="nohostport" ${userLine}`,
      `expiry-time="2030" ${userLine}`,
      `tunnel="x" ${userLine}`,
      `principals="a" ${userLine}`,
      "restrict,",
      "restrict",
      "ssh-ed25519 AAAA",
      `no-pty,${"x".repeat(100)}`,
      formatPublicKeyLine(parsePublicKeyBlob(userCert().blob))
    ]
    const { entries, errors } = parseAuthorizedKeys([...bad, userLine].join("\n"))
    expect(entries.map((e) => e.line)).toEqual([bad.length + 1])
    expect(errors.map((e) => e.line)).toEqual(bad.map((_, i) => i + 1))
    for (const line of bad) expect(reasonOf(() => parseAuthorizedKeyLine(line))).toMatch(/corrupt|unsupported-format/)
  })
})
