/**
 * Our server with OpenSSH certificates and authorized_keys options, driven by the real `ssh`:
 * user certificates signed by `ssh-keygen -s` accepted through trusted user CA keys (and refused
 * when expired, for another principal, from another CA, or from a forbidden address); a host
 * certificate signed by `ssh-keygen -s -h` accepted by `ssh` through a known_hosts
 * `@cert-authority` line; authorized_keys options enforced by `effect-ssh serve`; and our own
 * client presenting a certificate to our server.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { afterAll, beforeAll, expect, it } from "vitest"
import { startServe } from "../support/serve.js"
import type { Serving } from "../support/serve.js"
import * as KnownHosts from "../../src/KnownHosts.js"
import { execSession, ptySupported } from "../../src/node/ExecSession.js"
import { parseAuthorizedKeys } from "../../src/protocol/keys/authorizedKeys.js"
import { parseCertificateLine, signCertificate, type SshCertificate } from "../../src/protocol/keys/certificate.js"
import { generatePrivateKey, parsePrivateKey, type SshPrivateKey } from "../../src/protocol/keys/privateKey.js"
import { formatPublicKeyLine, parsePublicKeyLine } from "../../src/protocol/keys/publicKey.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import * as SshServer from "../../src/SshServer.js"
import type { AuthContext } from "../../src/SshServer.js"
import { generateKey, runSsh, sshKeygen } from "../support/openssh.js"
import type { GeneratedKey, SshOptions } from "../support/openssh.js"
import { startServer, type RunningServer } from "../support/ourServer.js"
import { describeWithPeers } from "../support/peers.js"

const HOUR = 3600n
const nowSeconds = () => BigInt(Math.floor(Date.now() / 1000))
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

describeWithPeers(["ssh", "ssh-keygen"], "our server with certificates and authorized_keys options", () => {
  let dir: string
  let userCa: string
  let otherCa: string
  let hostCa: string
  let user: GeneratedKey
  let hostKeys: Array<{ key: SshPrivateKey; certificate: SshCertificate }>
  let server: RunningServer
  let seen: Array<{ username: string; certificate: string | undefined; key: string }>

  /** Signs a copy of the user's public key with `ssh-keygen -s`; returns the `*-cert.pub` path. */
  let certCount = 0
  const userCert = async (ca: string, args: ReadonlyArray<string>) => {
    const copy = join(dir, `user_copy_${++certCount}.pub`)
    await copyFile(user.publicPath, copy)
    await sshKeygen(["-q", "-s", ca, "-I", `cert ${certCount}`, ...args, copy])
    return copy.replace(/\.pub$/, "-cert.pub")
  }
  const ssh = (o: Partial<SshOptions> & { readonly certificate?: string; readonly port?: number }) =>
    runSsh({
      port: o.port ?? server.port,
      user: "alice",
      command: "echo certified",
      identityFile: user.privatePath,
      ...o,
      options: {
        PreferredAuthentications: "publickey",
        ...(o.certificate !== undefined ? { CertificateFile: o.certificate } : {}),
        ...o.options
      }
    })

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-server-certs-"))
    userCa = join(dir, "user_ca")
    otherCa = join(dir, "other_ca")
    hostCa = join(dir, "host_ca")
    for (const ca of [userCa, otherCa, hostCa]) await sshKeygen(["-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", ca])
    user = await generateKey(join(dir, "id_user"), "ed25519")
    hostKeys = []
    for (const [name, generate] of [
      ["ed25519", ["-t", "ed25519"]],
      ["rsa", ["-t", "rsa", "-b", "2048"]]
    ] as const) {
      const path = join(dir, `ssh_host_${name}_key`)
      await sshKeygen(["-q", ...generate, "-N", "", "-C", `host ${name}`, "-f", path])
      await sshKeygen(["-q", "-s", hostCa, "-h", "-I", `host ${name}`, "-n", "127.0.0.1,localhost", `${path}.pub`])
      hostKeys.push({
        key: parsePrivateKey(await readFile(path)),
        certificate: parseCertificateLine(await readFile(`${path}-cert.pub`, "utf8"))
      })
    }
    const keys = SshServer.authorizedKeysAuthenticator({ trustedUserCAKeys: [parsePublicKeyLine(await readFile(`${userCa}.pub`, "utf8"))] })
    seen = []
    server = await startServer({
      hostKeys: hostKeys.map((h) => h.key),
      hostCertificates: hostKeys.map((h) => h.certificate),
      authenticate: (ctx: AuthContext) => {
        if (ctx.method === "publickey" && !ctx.query) {
          seen.push({ username: ctx.username, certificate: ctx.certificate?.keyId, key: formatPublicKeyLine(ctx.key, "") })
        }
        return keys(ctx)
      },
      onSession: execSession()
    })
  }, 120_000)

  afterAll(async () => {
    await server?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it("ssh logs in with a user certificate from a trusted CA; the handler sees the certified key and the certificate", async () => {
    const cert = await userCert(userCa, ["-n", "alice,ops", "-V", "-5m:+1h"])
    seen = []
    const r = await ssh({ certificate: cert })
    expect(r.stderr).toBe("")
    expect(r.stdout).toBe("certified\n")
    expect(seen).toEqual([{ username: "alice", certificate: `cert ${certCount}`, key: user.publicLine.split(" ").slice(0, 2).join(" ") }])
  })

  it("refuses a certificate that is expired, for another principal, from an untrusted CA or from a forbidden address", async () => {
    const cases: ReadonlyArray<[string, string, string]> = [
      ["expired", await userCert(userCa, ["-n", "alice", "-V", "20200101:20200102"]), "alice"],
      ["not yet valid", await userCert(userCa, ["-n", "alice", "-V", "+1h:+2h"]), "alice"],
      ["wrong principal", await userCert(userCa, ["-n", "alice", "-V", "-5m:+1h"]), "bob"],
      ["untrusted CA", await userCert(otherCa, ["-n", "alice", "-V", "-5m:+1h"]), "alice"],
      ["source-address", await userCert(userCa, ["-n", "alice", "-V", "-5m:+1h", "-O", "source-address=10.0.0.0/8"]), "alice"]
    ]
    for (const [name, cert, login] of cases) {
      const r = await ssh({ certificate: cert, user: login })
      expect(r.exitCode, name).toBe(255)
      expect(r.stderr, name).toMatch(/Permission denied \(publickey/)
    }
    // the same login with a good certificate works: what failed above is the certificate
    const good = await ssh({ certificate: await userCert(userCa, ["-n", "alice,bob", "-V", "-5m:+1h"]), user: "bob" })
    expect(good.stdout).toBe("certified\n")
  })

  it("runs a certificate's force-command instead of the client's, with SSH_ORIGINAL_COMMAND", async () => {
    const cert = await userCert(userCa, ["-n", "alice", "-V", "-5m:+1h", "-O", "force-command=echo cert-forced:$SSH_ORIGINAL_COMMAND"])
    const r = await ssh({ certificate: cert, command: "echo asked" })
    expect(r.stdout).toBe("cert-forced:echo asked\n")
  })

  it("ssh accepts our host certificates through an @cert-authority line and refuses them without one", async () => {
    const knownHosts = join(dir, "known_hosts_ca")
    const caLine = (await readFile(`${hostCa}.pub`, "utf8")).trim()
    const cert = await userCert(userCa, ["-n", "alice", "-V", "-5m:+1h"])
    const strict = (algorithm: string) => ({
      StrictHostKeyChecking: "yes",
      UserKnownHostsFile: knownHosts,
      HostKeyAlgorithms: algorithm,
      LogLevel: "DEBUG1"
    })
    for (const algorithm of ["ssh-ed25519-cert-v01@openssh.com", "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com"]) {
      await writeFile(knownHosts, `# the host CA\n@cert-authority * ${caLine}\n`)
      const ok = await ssh({ certificate: cert, options: strict(algorithm) })
      expect(ok.stdout, algorithm).toBe("certified\n")
      expect(ok.stderr, algorithm).toMatch(new RegExp(`Server host certificate: ${algorithm.replace(/^rsa-sha2-\d+/, "ssh-rsa").replace(/[.]/g, "\\.")} .* ID "host `))

      await writeFile(knownHosts, "")
      const refused = await ssh({ certificate: cert, options: strict(algorithm) })
      expect(refused.exitCode, algorithm).toBe(255)
      expect(refused.stderr, algorithm).toMatch(/Host key verification failed/)
    }
    // a CA line for another CA is no better than none
    await writeFile(knownHosts, `@cert-authority * ${(await readFile(`${userCa}.pub`, "utf8")).trim()}\n`)
    const wrongCa = await ssh({ certificate: cert, options: strict("ssh-ed25519-cert-v01@openssh.com") })
    expect(wrongCa.exitCode).toBe(255)
    expect(wrongCa.stderr).toMatch(/Host key verification failed/)
  })

  it("does not announce host certificates in hostkeys-00@openssh.com, only the plain keys", async () => {
    const knownHosts = join(dir, "known_hosts_update")
    const ed25519 = formatPublicKeyLine(hostKeys[0]!.key.publicKey, "")
    await writeFile(knownHosts, `[127.0.0.1]:${server.port} ${ed25519}\n`)
    const r = await ssh({
      certificate: await userCert(userCa, ["-n", "alice", "-V", "-5m:+1h"]),
      options: { StrictHostKeyChecking: "yes", UserKnownHostsFile: knownHosts, UpdateHostKeys: "yes", HostKeyAlgorithms: "ssh-ed25519,rsa-sha2-512", LogLevel: "DEBUG1" }
    })
    expect(r.stdout, r.stderr).toBe("certified\n")
    const lines = (await readFile(knownHosts, "utf8")).trim().split("\n")
    expect(lines.some((l) => l.includes("-cert-v01@openssh.com"))).toBe(false)
    expect(lines.some((l) => l.includes(formatPublicKeyLine(hostKeys[1]!.key.publicKey, "")))).toBe(true)
  })

  it("our client logs in to our server with SshAuth.certificate and verifies its host certificate", async () => {
    const ca = parsePrivateKey(await readFile(userCa))
    const key = generatePrivateKey("ecdsa")
    const knownHosts = join(dir, "known_hosts_ours")
    await writeFile(knownHosts, `@cert-authority * ${(await readFile(`${hostCa}.pub`, "utf8")).trim()}\n`)
    const connect = (cert: SshCertificate, username = "alice") =>
      Effect.runPromiseExit(
        Effect.scoped(
          Effect.gen(function* () {
            const client = yield* SshClient.connect({
              host: "127.0.0.1",
              port: server.port,
              username,
              auth: [SshAuth.certificate(key, cert)],
              hostVerifier: KnownHosts.verifier({ file: knownHosts, strict: "yes" }),
              algorithms: { hostKey: ["ssh-ed25519-cert-v01@openssh.com"] }
            })
            const result = yield* client.exec("echo ours")
            return { stdout: text(result.stdout), hostKey: client.hostKey }
          })
        )
      )
    const sign = (options: Partial<Parameters<typeof signCertificate>[2]>) =>
      signCertificate(ca, key.publicKey, { certType: "user", keyId: "ours", principals: ["alice"], validAfter: nowSeconds() - HOUR, validBefore: nowSeconds() + HOUR, ...options })

    const ok = await connect(sign({}))
    expect(Exit.isSuccess(ok) && ok.value.stdout).toBe("ours\n")
    expect(Exit.isSuccess(ok) && ok.value.hostKey.certificate?.keyId).toBe("host ed25519")

    for (const [name, cert, username] of [
      ["expired", sign({ validAfter: nowSeconds() - 2n * HOUR, validBefore: nowSeconds() - HOUR }), "alice"],
      ["wrong principal", sign({}), "mallory"]
    ] as const) {
      const exit = await connect(cert, username)
      expect(Exit.isFailure(exit), name).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause), name).toMatch(/SshAuthError/)
    }
  })

  it("a handler that only checks the signature cannot accept a bad certificate nor skip its force-command", async () => {
    const ca = generatePrivateKey("ed25519")
    const key = generatePrivateKey("ed25519")
    const naive = await startServer({
      hostKeys: [hostKeys[0]!.key],
      authenticate: (ctx) =>
        Effect.succeed(ctx.method === "publickey" && (ctx.query || ctx.signatureValid) ? SshServer.AuthDecision.accept : SshServer.AuthDecision.reject()),
      onSession: execSession()
    })
    try {
      const run = (cert: SshCertificate) =>
        Effect.runPromiseExit(
          Effect.scoped(
            Effect.gen(function* () {
              const client = yield* SshClient.connect({
                host: "127.0.0.1",
                port: naive.port,
                username: "anyone",
                auth: [SshAuth.certificate(key, cert)],
                hostVerifier: SshClient.acceptAnyHostKey
              })
              return text((yield* client.exec("echo asked")).stdout)
            })
          )
        )
      const base = { certType: "user" as const, keyId: "naive", principals: ["anyone"] }
      const expired = await run(signCertificate(ca, key.publicKey, { ...base, validAfter: nowSeconds() - 2n * HOUR, validBefore: nowSeconds() - HOUR }))
      expect(Exit.isFailure(expired)).toBe(true)
      const hostCert = await run(signCertificate(ca, key.publicKey, { ...base, certType: "host" }))
      expect(Exit.isFailure(hostCert)).toBe(true)
      // a certificate whose CA signature does not verify: the last byte of the signature flipped
      const good = signCertificate(ca, key.publicKey, base)
      const tampered = Uint8Array.from(good.blob)
      tampered[tampered.length - 1]! ^= 1
      const forged = await run(parsePublicKeyLine(`${good.type} ${Buffer.from(tampered).toString("base64")}`).certificate!)
      expect(Exit.isFailure(forged)).toBe(true)

      const forced = await run(signCertificate(ca, key.publicKey, { ...base, criticalOptions: { "force-command": "echo forced-by-cert" } }))
      expect(Exit.isSuccess(forced) && forced.value).toBe("forced-by-cert\n")
    } finally {
      await naive.stop()
    }
  })
})

describeWithPeers(["ssh", "ssh-keygen"], "effect-ssh serve with authorized_keys options and certificates", () => {
  let dir: string
  const keys: Record<string, GeneratedKey> = {}
  let userCa: string
  let hostCa: string
  let serving: Serving

  const ssh = (key: string, o: Partial<SshOptions> = {}) =>
    runSsh({ port: serving.port, user: "carol", identityFile: keys[key]!.privatePath, command: "echo logged-in", ...o, options: { PreferredAuthentications: "publickey", ...o.options } })

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-serve-opts-"))
    for (const name of ["forced", "nopty", "from", "expired", "env", "certified"]) keys[name] = await generateKey(join(dir, `id_${name}`), "ed25519")
    userCa = join(dir, "user_ca")
    hostCa = join(dir, "host_ca")
    const deployCa = join(dir, "deploy_ca")
    for (const ca of [userCa, hostCa, deployCa]) await sshKeygen(["-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", ca])
    const hostKey = join(dir, "ssh_host_ed25519_key")
    await sshKeygen(["-q", "-t", "ed25519", "-N", "", "-f", hostKey])
    await sshKeygen(["-q", "-s", hostCa, "-h", "-I", "serve host", "-n", "127.0.0.1", `${hostKey}.pub`])
    const authorizedKeys = [
      `command="echo forced:$SSH_ORIGINAL_COMMAND" ${keys.forced!.publicLine}`,
      `no-pty ${keys.nopty!.publicLine}`,
      `from="10.0.0.0/8" ${keys.from!.publicLine}`,
      `expiry-time="20200101" ${keys.expired!.publicLine}`,
      `environment="GREETING=hello from options" ${keys.env!.publicLine}`,
      `cert-authority,principals="deploy" ${(await readFile(`${deployCa}.pub`, "utf8")).trim()}`
    ]
    expect(parseAuthorizedKeys(authorizedKeys.join("\n")).errors).toEqual([])
    await writeFile(join(dir, "authorized_keys"), authorizedKeys.join("\n") + "\n")
    await copyFile(`${userCa}.pub`, join(dir, "trusted_user_ca_keys"))
    // a certificate for the deploy CA line (principal "deploy", any login name) and one for the trusted CA (principal "carol")
    await sshKeygen(["-q", "-s", deployCa, "-I", "deploy", "-n", "deploy", "-V", "-5m:+1h", keys.certified!.publicPath])
    await copyFile(keys.certified!.publicPath, join(dir, "carol.pub"))
    await sshKeygen(["-q", "-s", userCa, "-I", "carol", "-n", "carol", "-V", "-5m:+1h", join(dir, "carol.pub")])

    serving = await startServe(
      [
        "--listen", "127.0.0.1:0",
        "--host-key", hostKey,
        "--host-certificate", `${hostKey}-cert.pub`,
        "--authorized-keys", join(dir, "authorized_keys"),
        "--trusted-user-ca-keys", join(dir, "trusted_user_ca_keys"),
        "--exec"
      ]
    )
  }, 120_000)

  afterAll(async () => {
    if (serving) expect(await serving.stop()).toBe(0)
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it("prints the host certificate it serves", () => {
    expect(serving.lines).toContainEqual(expect.stringMatching(/^host certificate ssh-ed25519-cert-v01@openssh\.com "serve host" for SHA256:\S+, CA SHA256:\S+$/))
    expect(serving.lines).toContain("auth: publickey")
  })

  it('command="..." replaces the client\'s command, which it gets as SSH_ORIGINAL_COMMAND', async () => {
    const r = await ssh("forced", { command: "echo asked" })
    expect(r.stdout).toBe("forced:echo asked\n")
    const shell = await ssh("forced", { command: "echo asked", extraArgs: ["-s"] })
    expect(shell.stdout).toBe("forced:echo asked\n")
  })

  it("no-pty refuses the pty of ssh -tt (fatal for ssh when a tty is forced); without -tt the key works", async () => {
    const r = await ssh("nopty", { command: "test -t 0 && echo tty || echo no-tty", extraArgs: ["-tt"], options: { LogLevel: "INFO" } })
    expect(r.stderr).toMatch(/PTY allocation request failed/)
    expect(r.stdout).toBe("")
    expect(r.exitCode).not.toBe(0)
    const plain = await ssh("nopty", { command: "test -t 0 && echo tty || echo no-tty" })
    expect(plain.stdout).toBe("no-tty\n")
    if (ptySupported()) {
      // the same request with a key without no-pty gets its pty
      const control = await ssh("env", { command: "test -t 0 && echo tty || echo no-tty", extraArgs: ["-tt"], options: { LogLevel: "INFO" } })
      expect(control.stderr).not.toMatch(/PTY allocation request failed/)
      expect(control.stdout.replace(/\r/g, "")).toBe("tty\n")
    } else {
      console.warn("SKIPPED the pty control: util-linux `script` is missing, so no key gets a pty")
    }
  })

  it('from="10.0.0.0/8" refuses a 127.0.0.1 client; an expiry-time in the past refuses the key', async () => {
    for (const name of ["from", "expired"]) {
      const r = await ssh(name)
      expect(r.exitCode, name).toBe(255)
      expect(r.stderr, name).toMatch(/Permission denied \(publickey\)/)
    }
  })

  it('environment="..." reaches the command', async () => {
    const r = await ssh("env", { command: 'echo "$GREETING"' })
    expect(r.stdout).toBe("hello from options\n")
  })

  it("a cert-authority line with principals= and a --trusted-user-ca-keys CA both log in with ssh-keygen certificates", async () => {
    const deploy = await ssh("certified", { user: "whoever", options: { CertificateFile: `${keys.certified!.privatePath}-cert.pub` } })
    expect(deploy.stdout).toBe("logged-in\n")
    const carol = await ssh("certified", { options: { CertificateFile: join(dir, "carol-cert.pub") } })
    expect(carol.stdout).toBe("logged-in\n")
    // the trusted CA's certificate names carol only
    const notCarol = await ssh("certified", { user: "dave", options: { CertificateFile: join(dir, "carol-cert.pub") } })
    expect(notCarol.exitCode).toBe(255)
  })

  it("ssh verifies the --host-certificate through @cert-authority with StrictHostKeyChecking=yes", async () => {
    const knownHosts = join(dir, "known_hosts")
    await writeFile(knownHosts, `@cert-authority * ${(await readFile(`${hostCa}.pub`, "utf8")).trim()}\n`)
    const options = { StrictHostKeyChecking: "yes", UserKnownHostsFile: knownHosts }
    const ok = await ssh("env", { options })
    expect(ok.stdout).toBe("logged-in\n")
    await writeFile(knownHosts, "")
    const refused = await ssh("env", { options })
    expect(refused.exitCode).toBe(255)
    expect(refused.stderr).toMatch(/Host key verification failed/)
  })
})
