/**
 * Key files written by the tools users have, generated at test time: ssh-keygen's public
 * exports (RFC 4716, PKCS8, PEM) and PuTTYgen's PPK v2/v3, plain and encrypted. Each must parse
 * to the key the tool describes (same fingerprint as `ssh-keygen -l`), and signatures must cross:
 * ours verified by `ssh-keygen -Y check-novalidate`, ssh-keygen's (`-Y sign`) verified by us.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { KeyError } from "../../src/protocol/keys/errors.js"
import { parsePrivateKey, type SshPrivateKey } from "../../src/protocol/keys/privateKey.js"
import { fingerprint, parsePublicKeyBlob, signatureAlgorithms, verifySignature, type SshPublicKey } from "../../src/protocol/keys/publicKey.js"
import { parsePublicKey } from "../../src/protocol/keys/publicKeyFile.js"
import { SshReader } from "../../src/protocol/wire/reader.js"
import { SshWriter } from "../../src/protocol/wire/writer.js"
import { runChecked, sshKeygen } from "../support/openssh.js"
import { describeWithPeers, requirePeer } from "../support/peers.js"

const PASSPHRASE = "correct horse"
const NAMESPACE = "file"
const MESSAGE = "a message signed across implementations\n"

/** The bytes an SSHSIG signature covers (PROTOCOL.sshsig). */
function sshsigSignedData(message: string): Uint8Array {
  const digest = createHash("sha512").update(message).digest()
  return new SshWriter(128).raw(new TextEncoder().encode("SSHSIG")).string(NAMESPACE).string("").string("sha512").string(digest).finish()
}

/** An armored SSHSIG signature made with our key, for `ssh-keygen -Y check-novalidate`. */
function sshsigSign(key: SshPrivateKey, message: string): string {
  const algorithm = key.type === "ssh-rsa" ? "rsa-sha2-512" : signatureAlgorithms(key.type)[0]!
  const signature = key.sign(algorithm, sshsigSignedData(message))
  const blob = new SshWriter(512)
    .raw(new TextEncoder().encode("SSHSIG"))
    .uint32(1)
    .string(key.publicKey.blob)
    .string(NAMESPACE)
    .string("")
    .string("sha512")
    .string(signature)
    .finish()
  const b64 = Buffer.from(blob).toString("base64").match(/.{1,76}/g)!.join("\n")
  return `-----BEGIN SSH SIGNATURE-----\n${b64}\n-----END SSH SIGNATURE-----\n`
}

/** Verifies an armored SSHSIG signature (from `ssh-keygen -Y sign`) with our code and `key`. */
function sshsigVerify(key: SshPublicKey, armored: string, message: string): boolean {
  const blob = Buffer.from(armored.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64")
  const r = new SshReader(blob)
  expect(new TextDecoder().decode(r.bytes(6))).toBe("SSHSIG")
  expect(r.uint32()).toBe(1)
  const publicKey = r.string()
  expect(r.ascii()).toBe(NAMESPACE)
  r.string()
  expect(r.ascii()).toBe("sha512")
  const signature = r.string()
  r.end()
  return Buffer.from(publicKey).equals(Buffer.from(key.blob)) && verifySignature(key.blob, signature, sshsigSignedData(message))
}

async function keygenFingerprint(path: string, hash = "sha256"): Promise<{ bits: string; fingerprint: string }> {
  const { stdout } = await sshKeygen(["-l", "-E", hash, "-f", path])
  const [bits, fp] = stdout.trim().split(" ")
  return { bits: bits!, fingerprint: fp! }
}

let dir = ""

/** `ssh-keygen -Y check-novalidate` on our signature; returns the fingerprint it names. */
async function opensshChecks(key: SshPrivateKey): Promise<string> {
  const sigPath = join(dir, `sig-${Math.random().toString(36).slice(2)}`)
  await writeFile(sigPath, sshsigSign(key, MESSAGE))
  const r = await runChecked(requirePeer("ssh-keygen"), ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", sigPath], { stdin: MESSAGE })
  const fp = /(SHA256:[A-Za-z0-9+/]+)/.exec(r.stdout + r.stderr)?.[1]
  return fp ?? ""
}

/** `ssh-keygen -Y sign` with an OpenSSH private key file. */
async function opensshSigns(privatePath: string): Promise<string> {
  const messagePath = join(dir, `msg-${Math.random().toString(36).slice(2)}`)
  await writeFile(messagePath, MESSAGE)
  await sshKeygen(["-Y", "sign", "-n", NAMESPACE, "-f", privatePath, messagePath])
  return readFile(`${messagePath}.sig`, "utf8")
}

interface Spec {
  readonly name: string
  readonly keygen: ReadonlyArray<string>
  readonly puttygen: ReadonlyArray<string>
  /** ssh-keygen -e can write it as PKCS8 / PEM. */
  readonly pem: boolean
}
const specs: ReadonlyArray<Spec> = [
  { name: "ed25519", keygen: ["-t", "ed25519"], puttygen: ["-t", "ed25519"], pem: false },
  { name: "ecdsa-256", keygen: ["-t", "ecdsa", "-b", "256"], puttygen: ["-t", "ecdsa", "-b", "256"], pem: true },
  { name: "ecdsa-384", keygen: ["-t", "ecdsa", "-b", "384"], puttygen: ["-t", "ecdsa", "-b", "384"], pem: true },
  { name: "ecdsa-521", keygen: ["-t", "ecdsa", "-b", "521"], puttygen: ["-t", "ecdsa", "-b", "521"], pem: true },
  { name: "rsa-2048", keygen: ["-t", "rsa", "-b", "2048"], puttygen: ["-t", "rsa", "-b", "2048"], pem: true }
]

describeWithPeers(["ssh-keygen"], "public key exports of ssh-keygen", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-formats-"))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  for (const spec of specs) {
    it(`reads ${spec.name} as RFC4716${spec.pem ? ", PKCS8 and PEM" : ""} with ssh-keygen's fingerprint, and signatures cross`, async () => {
      const path = join(dir, `id_${spec.name}`)
      await sshKeygen(["-q", ...spec.keygen, "-N", "", "-C", `${spec.name} comment`, "-f", path])
      const expected = await keygenFingerprint(`${path}.pub`)
      const formats = ["RFC4716", ...(spec.pem ? ["PKCS8", "PEM"] : [])]
      for (const format of formats) {
        const { stdout } = await sshKeygen(["-e", "-m", format, "-f", `${path}.pub`])
        const key = parsePublicKey(stdout)
        expect(fingerprint(key.blob), format).toBe(expected.fingerprint)
        expect(String(key.bits)).toBe(expected.bits)
        // ssh-keygen's signature verifies with the key read from each export
        expect(sshsigVerify(key, await opensshSigns(path), MESSAGE)).toBe(true)
        expect(sshsigVerify(key, await opensshSigns(path), "another message")).toBe(false)
      }
      const rfc = parsePublicKey((await sshKeygen(["-e", "-m", "RFC4716", "-f", `${path}.pub`])).stdout)
      expect(rfc.comment).toMatch(/^\d+-bit [A-Z0-9]+, converted by /)
      // and ssh-keygen verifies ours, made with the private key it wrote
      const ours = parsePrivateKey(await readFile(path))
      expect(await opensshChecks(ours)).toBe(expected.fingerprint)
    })
  }
})

describeWithPeers(["ssh-keygen", "puttygen"], "PuTTY keys written by puttygen", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-ppk-"))
    await writeFile(join(dir, "empty"), "")
    await writeFile(join(dir, "passphrase"), PASSPHRASE)
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const puttygen = (args: ReadonlyArray<string>) => runChecked(requirePeer("puttygen"), args, { stdin: "", timeoutMs: 60_000 })

  interface Variant {
    readonly name: string
    readonly args: ReadonlyArray<string>
    readonly passphrase?: string
  }
  // cheap Argon2 parameters keep the encrypted v3 files quick to read in JavaScript; one file keeps puttygen's defaults
  const variants: ReadonlyArray<Variant> = [
    { name: "v3", args: ["--new-passphrase", "empty"] },
    { name: "v2", args: ["--new-passphrase", "empty", "--ppk-param", "version=2"] },
    { name: "v2 encrypted", args: ["--new-passphrase", "passphrase", "--ppk-param", "version=2"], passphrase: PASSPHRASE },
    { name: "v3 encrypted (argon2id)", args: ["--new-passphrase", "passphrase", "--ppk-param", "passes=2"], passphrase: PASSPHRASE },
    { name: "v3 encrypted (argon2i)", args: ["--new-passphrase", "passphrase", "--ppk-param", "kdf=argon2i,passes=1,memory=1024"], passphrase: PASSPHRASE },
    { name: "v3 encrypted (argon2d)", args: ["--new-passphrase", "passphrase", "--ppk-param", "kdf=argon2d,passes=1,parallelism=2"], passphrase: PASSPHRASE }
  ]

  // DSA only where this OpenSSH still signs with it (it is gone from recent releases)
  const opensshHasDsa = spawnSync("ssh", ["-Q", "key"], { encoding: "utf8" }).stdout?.split("\n").includes("ssh-dss") === true
  const dsa: Spec = { name: "dsa", keygen: [], puttygen: ["-t", "dsa", "-b", "2048"], pem: false }
  for (const spec of opensshHasDsa ? [...specs, dsa] : specs) {
    it(`reads ${spec.name} PPK files in every variant with ssh-keygen's fingerprint, and signatures cross`, async () => {
      const base = join(dir, spec.name)
      await puttygen([...spec.puttygen, "-q", "-C", `${spec.name} putty`, "--new-passphrase", join(dir, "empty"), "-o", `${base}.ppk`])
      // the public key as OpenSSH and as RFC 4716, and the private key as OpenSSH for ssh-keygen -Y sign
      await puttygen([`${base}.ppk`, "-q", "-L", "-o", `${base}.pub`])
      await puttygen([`${base}.ppk`, "-q", "-p", "-o", `${base}.rfc`])
      await puttygen([`${base}.ppk`, "-q", "-O", "private-openssh-new", "--new-passphrase", join(dir, "empty"), "-o", `${base}.openssh`])
      const expected = await keygenFingerprint(`${base}.pub`)
      const rfc = parsePublicKey(await readFile(`${base}.rfc`))
      expect(fingerprint(rfc.blob)).toBe(expected.fingerprint)
      expect(rfc.comment).toBe(`${spec.name} putty`)
      const theirSignature = await opensshSigns(`${base}.openssh`)

      for (const variant of variants) {
        const path = `${base}-${variant.name.replace(/\W+/g, "-")}.ppk`
        await puttygen([`${base}.ppk`, "-q", "-P", "--old-passphrase", join(dir, "empty"), ...variant.args.map((a) => (a === "empty" || a === "passphrase" ? join(dir, a) : a)), "-o", path])
        const text = await readFile(path, "utf8")
        expect(text).toMatch(variant.name.startsWith("v2") ? /^PuTTY-User-Key-File-2:/ : /^PuTTY-User-Key-File-3:/)
        const key = parsePrivateKey(text, variant.passphrase)
        expect(fingerprint(key.publicKey.blob), variant.name).toBe(expected.fingerprint)
        expect(String(key.publicKey.bits)).toBe(expected.bits)
        expect(key.comment).toBe(`${spec.name} putty`)
        expect(sshsigVerify(key.publicKey, theirSignature, MESSAGE)).toBe(true)
        if (variant.passphrase !== undefined) {
          expect(() => parsePrivateKey(text)).toThrow(expect.objectContaining({ reason: "passphrase-required" }))
          expect(() => parsePrivateKey(text, "wrong")).toThrow(expect.objectContaining({ reason: "bad-passphrase" }))
        }
      }
      const ours = parsePrivateKey(await readFile(`${base}.ppk`, "utf8"))
      expect(await opensshChecks(ours)).toBe(expected.fingerprint)
    }, 120_000)
  }

  it("reads a v3 file with puttygen's default Argon2 cost", async () => {
    const path = join(dir, "default.ppk")
    await puttygen(["-t", "ed25519", "-q", "--new-passphrase", join(dir, "passphrase"), "-o", path])
    await puttygen([path, "-q", "-L", "--old-passphrase", join(dir, "passphrase"), "-o", `${path}.pub`])
    const key = parsePrivateKey(await readFile(path), PASSPHRASE)
    expect(fingerprint(key.publicKey.blob)).toBe((await keygenFingerprint(`${path}.pub`)).fingerprint)
    expect(parsePublicKeyBlob(key.publicKey.blob).type).toBe("ssh-ed25519")
    const text = await readFile(path)
    expect(() => parsePrivateKey(text, "nope")).toThrow(KeyError)
  }, 60_000)
})
