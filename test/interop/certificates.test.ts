/**
 * OpenSSH certificates both ways against the real tools: user certificates we sign log in to an
 * sshd that trusts our CA (TrustedUserCAKeys); certificates `ssh-keygen -s` signs are read and
 * checked by us; an sshd presenting host certificates is accepted through a known_hosts
 * `@cert-authority` line and refused, with a clear error, when the CA, principal, validity or
 * revocation says so.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { afterAll, beforeAll, expect, it } from "vitest"
import { checkCertificate, parseCertificateLine, signCertificate, type SshCertificate } from "../../src/protocol/keys/certificate.js"
import { generatePrivateKey, type SshPrivateKey } from "../../src/protocol/keys/privateKey.js"
import { fingerprint, formatPublicKeyLine, parsePublicKeyBlob } from "../../src/protocol/keys/publicKey.js"
import * as KnownHosts from "../../src/KnownHosts.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import { sshKeygen } from "../support/openssh.js"
import { describeWithPeers } from "../support/peers.js"
import { startSshd, type Sshd } from "../support/sshd.js"

const runExit = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromiseExit(Effect.scoped(effect))
const HOUR = 3600n
const nowSeconds = () => BigInt(Math.floor(Date.now() / 1000))

function failureOf<A, E>(exit: Exit.Exit<A, E>): E {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return failure
}

describeWithPeers(["sshd", "ssh-keygen"], "OpenSSH certificates", () => {
  let dir: string
  let sshd: Sshd
  let ourCa: SshPrivateKey
  let keygenCaPath: string
  let keygenCaLine: string
  let user: SshPrivateKey
  let rsaUser: SshPrivateKey
  let revokedUser: SshPrivateKey
  const hostCerts: Record<string, { path: string; certPath: string }> = {}

  const userCert = (key: SshPrivateKey, options: Partial<Parameters<typeof signCertificate>[2]> = {}) =>
    signCertificate(ourCa, key.publicKey, {
      certType: "user",
      keyId: "test user",
      principals: [sshd.user],
      validAfter: nowSeconds() - HOUR,
      validBefore: nowSeconds() + HOUR,
      ...options
    })

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-certs-"))
    await chmod(dir, 0o755)
    ourCa = generatePrivateKey("ed25519", { comment: "our ca" })
    user = generatePrivateKey("ed25519", { comment: "user" })
    rsaUser = generatePrivateKey("rsa", { bits: 2048, comment: "rsa user" })
    revokedUser = generatePrivateKey("ecdsa", { comment: "revoked user" })
    await writeFile(join(dir, "user_ca.pub"), `${formatPublicKeyLine(ourCa.publicKey)}\n`)
    await writeFile(join(dir, "revoked_keys"), `${formatPublicKeyLine(revokedUser.publicKey)}\n`)

    keygenCaPath = join(dir, "host_ca")
    await sshKeygen(["-q", "-t", "ecdsa", "-N", "", "-C", "host ca", "-f", keygenCaPath])
    keygenCaLine = (await readFile(`${keygenCaPath}.pub`, "utf8")).trim()
    // one host key per certificate situation; the client picks one with its host key algorithm
    const hosts: ReadonlyArray<[string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
      ["ed25519", ["-t", "ed25519"], ["-n", "127.0.0.1,localhost"]],
      ["ecdsa256", ["-t", "ecdsa", "-b", "256"], ["-n", "other.example.com"]],
      ["ecdsa384", ["-t", "ecdsa", "-b", "384"], ["-n", "127.0.0.1", "-V", "20200101:20200102"]],
      ["rsa", ["-t", "rsa", "-b", "2048"], ["-n", "127.0.0.1"]]
    ]
    for (const [name, generate, certArgs] of hosts) {
      const path = join(dir, `ssh_host_${name}_key`)
      await sshKeygen(["-q", ...generate, "-N", "", "-C", `host ${name}`, "-f", path])
      await sshKeygen(["-q", "-s", keygenCaPath, "-h", "-I", `host ${name}`, ...certArgs, `${path}.pub`])
      hostCerts[name] = { path, certPath: `${path}-cert.pub` }
    }
    sshd = await startSshd({
      hostKeys: ["ed25519"],
      config: {
        HostKey: Object.values(hostCerts).map((h) => h.path),
        HostCertificate: Object.values(hostCerts).map((h) => h.certPath),
        TrustedUserCAKeys: join(dir, "user_ca.pub"),
        RevokedKeys: join(dir, "revoked_keys"),
        LogLevel: "DEBUG1"
      }
    })
  }, 120_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const connect = (auth: ReadonlyArray<SshAuth.SshAuthMethod>, extra: Partial<SshClient.ConnectOptions> = {}) =>
    runExit(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect({
          host: sshd.host,
          port: sshd.port,
          username: sshd.user,
          auth,
          hostVerifier: SshClient.acceptAnyHostKey,
          ...extra
        })
        const result = yield* ssh.exec("echo certified")
        return { output: new TextDecoder().decode(result.stdout), hostKey: ssh.hostKey, algorithms: ssh.algorithms }
      })
    )

  it("logs in with user certificates we sign (ed25519 and RSA keys), trusted through TrustedUserCAKeys", async () => {
    for (const key of [user, rsaUser]) {
      const exit = await connect([SshAuth.certificate(key, userCert(key))])
      expect(Exit.isSuccess(exit) && exit.value.output).toBe("certified\n")
    }
    // the certificate is in the *-cert.pub form ssh-keygen -L reads
    const certPath = join(dir, "user-cert.pub")
    await writeFile(certPath, `${formatPublicKeyLine(parsePublicKeyBlob(userCert(user).blob), "user")}\n`)
    const listed = await sshKeygen(["-L", "-f", certPath])
    expect(listed.stdout).toContain("ssh-ed25519-cert-v01@openssh.com user certificate")
    expect(listed.stdout).toContain(`Signing CA: ED25519 ${fingerprint(ourCa.publicKey.blob)}`)
    expect(listed.stdout).toMatch(new RegExp(`Principals: \\n\\s+${sshd.user}\\n`))
  }, 60_000)

  it("is refused an expired certificate, a wrong principal and a revoked key", async () => {
    const cases: ReadonlyArray<[string, SshPrivateKey, SshCertificate, RegExp, string]> = [
      ["expired", user, userCert(user, { validAfter: nowSeconds() - 2n * HOUR, validBefore: nowSeconds() - HOUR }), /expired/i, "expired"],
      ["wrong principal", user, userCert(user, { principals: ["somebody-else"] }), /principal/i, "wrong-principal"],
      ["revoked", revokedUser, userCert(revokedUser), /revoked/i, "ok"]
    ]
    for (const [name, key, cert, sshdSays, ourCheck] of cases) {
      const before = sshd.logs().length
      const exit = await connect([SshAuth.certificate(key, cert)])
      const error = failureOf(exit)
      expect(error._tag, name).toBe("SshAuthError")
      expect(error.message).toMatch(/publickey \(rejected\)/)
      // sshd's log line may arrive a moment after its answer to us
      for (let i = 0; i < 40 && !sshdSays.test(sshd.logs().slice(before)); i++) await new Promise((r) => setTimeout(r, 50))
      expect(sshd.logs().slice(before), name).toMatch(sshdSays)
      // our own check says the same of the certificate itself (revocation is the server's list)
      const verdict = checkCertificate(cert, { certType: "user", now: Date.now(), principal: sshd.user, trustedCAs: [ourCa.publicKey.blob] })
      expect(verdict.ok ? "ok" : verdict.problem, name).toBe(ourCheck)
    }
  }, 60_000)

  it("reads and checks user and host certificates signed by ssh-keygen -s", async () => {
    const pub = join(dir, "signed_by_keygen.pub")
    await writeFile(pub, `${formatPublicKeyLine(user.publicKey, "me")}\n`)
    await sshKeygen(["-q", "-s", keygenCaPath, "-I", "alice@corp", "-n", "alice,deploy", "-V", "-5m:+1h", "-z", "77", "-O", "force-command=uptime", "-O", "source-address=127.0.0.0/8", pub])
    const cert = parseCertificateLine(await readFile(join(dir, "signed_by_keygen-cert.pub"), "utf8"))
    expect(cert).toMatchObject({ certType: "user", keyId: "alice@corp", principals: ["alice", "deploy"], serial: 77n })
    expect(cert.publicKey).toEqual(user.publicKey.blob)
    expect(cert.criticalOptions.get("force-command")).toBe("uptime")
    const caBlob = parsePublicKeyBlob(Buffer.from(keygenCaLine.split(" ")[1]!, "base64")).blob
    const check = { certType: "user" as const, now: Date.now(), trustedCAs: [caBlob], clientAddress: "127.0.0.1" }
    expect(checkCertificate(cert, { ...check, principal: "deploy" })).toEqual({ ok: true })
    expect(checkCertificate(cert, { ...check, principal: "root" })).toMatchObject({ ok: false, problem: "wrong-principal" })
    expect(checkCertificate(cert, { ...check, principal: "alice", clientAddress: "10.0.0.1" })).toMatchObject({ ok: false, problem: "source-address" })
    expect(checkCertificate(cert, { ...check, principal: "alice", now: Date.now() + 2 * 3600_000 })).toMatchObject({ ok: false, problem: "expired" })

    for (const [name, principal, problem] of [
      ["ed25519", "localhost", "ok"],
      ["ecdsa256", "127.0.0.1", "wrong-principal"],
      ["ecdsa384", "127.0.0.1", "expired"]
    ] as const) {
      const host = parseCertificateLine(await readFile(hostCerts[name]!.certPath, "utf8"))
      const verdict = checkCertificate(host, { certType: "host", now: Date.now(), principal, trustedCAs: [caBlob] })
      expect(verdict.ok ? "ok" : verdict.problem, name).toBe(problem)
      expect(checkCertificate(host, { certType: "user", now: 1_590_000_000_000, principal })).toMatchObject({ ok: false, problem: "wrong-type" })
    }
  })

  it("accepts host certificates through a known_hosts @cert-authority line, and refuses them with a reason", async () => {
    const knownHosts = join(dir, "known_hosts")
    const hostConnect = async (algorithm: string, lines: ReadonlyArray<string>) => {
      await writeFile(knownHosts, lines.map((l) => `${l}\n`).join(""))
      return connect([SshAuth.certificate(user, userCert(user))], {
        hostVerifier: KnownHosts.verifier({ file: knownHosts, strict: "yes" }),
        algorithms: { hostKey: [algorithm] }
      })
    }
    const caLine = `@cert-authority * ${keygenCaLine}`

    for (const algorithm of ["ssh-ed25519-cert-v01@openssh.com", "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com"]) {
      const ok = await hostConnect(algorithm, ["# CA", caLine])
      expect(Exit.isSuccess(ok), algorithm).toBe(true)
      if (Exit.isSuccess(ok)) {
        expect(ok.value.algorithms.hostKey).toBe(algorithm)
        expect(ok.value.hostKey.certificate?.keyId).toMatch(/^host /)
      }
    }

    const refused = async (algorithm: string, lines: ReadonlyArray<string>, reason: string, message: RegExp) => {
      const error = failureOf(await hostConnect(algorithm, lines))
      expect(error._tag).toBe("SshTransportError")
      expect(error._tag === "SshTransportError" && error.reason).toBe("host-key-rejected")
      expect(error.message).toMatch(message)
      const cause = (error as { cause?: unknown }).cause
      expect(cause).toBeInstanceOf(KnownHosts.KnownHostsError)
      expect((cause as KnownHosts.KnownHostsError).reason).toBe(reason)
    }
    await refused("ecdsa-sha2-nistp256-cert-v01@openssh.com", [caLine], "certificate", /known_hosts:1\): .*is not valid for "127\.0\.0\.1"/)
    await refused("ecdsa-sha2-nistp384-cert-v01@openssh.com", [caLine], "certificate", /expired/)
    await refused("ssh-ed25519-cert-v01@openssh.com", [], "unknown", /No ssh-ed25519 host key is known/)
    await refused("ssh-ed25519-cert-v01@openssh.com", [`@cert-authority *.example.com ${keygenCaLine}`], "unknown", /No ssh-ed25519 host key/)
    const rsaHostLine = (await readFile(`${hostCerts.rsa!.path}.pub`, "utf8")).trim()
    await refused("rsa-sha2-512-cert-v01@openssh.com", [caLine, `@revoked * ${rsaHostLine}`], "revoked", /revoked.*known_hosts:2/)
  }, 60_000)

  it("prefers certificate host keys when a @cert-authority line covers the host, as ssh does", async () => {
    const knownHosts = join(dir, "known_hosts_prefer")
    await writeFile(knownHosts, `@cert-authority [127.0.0.1]:${sshd.port} ${keygenCaLine}\n`)
    const hostKey = KnownHosts.hostKeyAlgorithms(knownHosts, sshd.host, sshd.port)
    expect(hostKey).toBeDefined()
    expect(KnownHosts.hostKeyAlgorithms(knownHosts, "elsewhere", 22)).toBeUndefined()
    const exit = await connect([SshAuth.certificate(user, userCert(user))], {
      hostVerifier: KnownHosts.verifier({ file: knownHosts, strict: "yes" }),
      algorithms: { hostKey: hostKey! }
    })
    expect(Exit.isSuccess(exit) && exit.value.algorithms.hostKey).toBe("ssh-ed25519-cert-v01@openssh.com")
  }, 30_000)
})
