/**
 * OpenSSH's real `ssh` client against our server: every algorithm both support, every auth
 * method OpenSSH can drive non-interactively, and the session features a user relies on.
 */
import { readFile, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { execSession } from "../../src/node/ExecSession.js"
import { signCertificate } from "../../src/protocol/keys/certificate.js"
import { generatePrivateKey, parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import type { SshPrivateKey } from "../../src/protocol/keys/privateKey.js"
import { parsePublicKeyLine } from "../../src/protocol/keys/publicKey.js"
import type { SshPublicKey } from "../../src/protocol/keys/publicKey.js"
import { SUPPORTED } from "../../src/protocol/transport/algorithms.js"
import { generateKey, runSsh } from "../support/openssh.js"
import type { SshOptions } from "../support/openssh.js"
import { passwordOrKeys, startServer } from "../support/ourServer.js"
import type { RunningServer } from "../support/ourServer.js"
import { describeWithPeers } from "../support/peers.js"
import { openSshAlgorithms } from "../support/sshd.js"

const PASSWORD = "server-test-pw"

describeWithPeers(["ssh", "ssh-keygen", "sshpass", "script"], "OpenSSH ssh → our server", () => {
  let dir: string
  let srv: RunningServer
  let theirs: Awaited<ReturnType<typeof openSshAlgorithms>>
  const clientKeys: Record<string, { path: string; publicKey: SshPublicKey }> = {}
  const hostKeys: SshPrivateKey[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-server-"))
    theirs = await openSshAlgorithms()
    const specs: Array<[string, "ed25519" | "ecdsa" | "rsa" | "dsa", number | undefined]> = [
      ["ed25519", "ed25519", undefined],
      ["ecdsa256", "ecdsa", 256],
      ["ecdsa384", "ecdsa", 384],
      ["ecdsa521", "ecdsa", 521],
      ["rsa", "rsa", 2048]
    ]
    if (theirs.keys.includes("ssh-dss")) specs.push(["dsa", "dsa", undefined])
    await Promise.all(
      specs.map(async ([name, type, bits]) => {
        const k = await generateKey(join(dir, `id_${name}`), type, bits === undefined ? {} : { bits })
        clientKeys[name] = { path: k.privatePath, publicKey: parsePublicKeyLine(k.publicLine) }
      })
    )
    hostKeys.push(
      generatePrivateKey("ed25519"),
      generatePrivateKey("ecdsa", { bits: 256 }),
      generatePrivateKey("ecdsa", { bits: 384 }),
      generatePrivateKey("ecdsa", { bits: 521 }),
      generatePrivateKey("rsa", { bits: 2048 })
    )
    // ssh-dss host key: this library generates no DSA keys, ssh-keygen still does here
    if (clientKeys.dsa) hostKeys.push(parsePrivateKey(await readFile(clientKeys.dsa.path)))
    // every host key also served as a host certificate, for the *-cert-v01@openssh.com algorithms
    const hostCa = generatePrivateKey("ed25519")
    srv = await startServer({
      hostKeys,
      hostCertificates: hostKeys.map((k) => signCertificate(hostCa, k.publicKey, { certType: "host", keyId: `host ${k.type}`, principals: ["127.0.0.1"] })),
      algorithms: { kex: SUPPORTED.kex, cipher: SUPPORTED.cipher, mac: SUPPORTED.mac, hostKey: SUPPORTED.hostKey, compression: SUPPORTED.compression },
      authenticate: passwordOrKeys(
        PASSWORD,
        Object.values(clientKeys).map((k) => k.publicKey)
      ),
      onSession: execSession({ subsystems: { upper: "tr a-z A-Z" } })
    })
  }, 60_000)

  afterAll(async () => {
    await srv?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** `ssh` with the ed25519 key and `echo ok` unless told otherwise (null: leave the option out). */
  const ssh = (o: { [K in keyof SshOptions]?: SshOptions[K] | null } = {}) => {
    const merged: Record<string, unknown> = { port: srv.port, user: "tester", identityFile: clientKeys.ed25519!.path, command: "echo ok", ...o }
    for (const key of Object.keys(merged)) if (merged[key] === null) delete merged[key]
    return runSsh(merged as unknown as SshOptions)
  }

  // `ssh -v` prints what was negotiated: the tests check the algorithm really was used
  const negotiatedLine = (stderr: string, what: RegExp) => stderr.split("\n").find((l) => what.test(l)) ?? ""

  const both = (ours: ReadonlyArray<string>, openssh: ReadonlyArray<string>) => ours.filter((a) => openssh.includes(a))

  it("shares algorithms with OpenSSH in every category", () => {
    expect(both(SUPPORTED.kex, theirs.kex).length).toBeGreaterThan(5)
    expect(both(SUPPORTED.cipher, theirs.ciphers).length).toBeGreaterThan(5)
    expect(both(SUPPORTED.mac, theirs.macs).length).toBeGreaterThan(5)
  })

  it("connects with OpenSSH's defaults (strict kex, ext-info)", async () => {
    const r = await ssh({ extraArgs: ["-v"] })
    expect(r.stdout).toBe("ok\n")
    expect(r.exitCode).toBe(0)
    expect(r.stderr).toMatch(/kex_input_ext_info: server-sig-algs=<[^>]*rsa-sha2-512/)
  })

  for (const kex of SUPPORTED.kex) {
    it(`kex ${kex}`, async ({ skip }) => {
      if (!theirs.kex.includes(kex)) return skip(`OpenSSH ${theirs.kex.length} kex methods do not include ${kex}`)
      const r = await ssh({ options: { KexAlgorithms: kex }, extraArgs: ["-v"] })
      expect(r.stdout).toBe("ok\n")
      expect(negotiatedLine(r.stderr, /debug1: kex: algorithm:/)).toContain(kex)
    })
  }

  for (const cipher of SUPPORTED.cipher) {
    it(`cipher ${cipher}`, async ({ skip }) => {
      if (!theirs.ciphers.includes(cipher)) return skip(`OpenSSH does not offer ${cipher}`)
      const r = await ssh({ options: { Ciphers: cipher }, extraArgs: ["-v"] })
      expect(r.stdout).toBe("ok\n")
      expect(negotiatedLine(r.stderr, /debug1: kex: server->client cipher:/)).toContain(`cipher: ${cipher} `)
    })
  }

  for (const mac of SUPPORTED.mac) {
    it(`MAC ${mac}`, async ({ skip }) => {
      if (!theirs.macs.includes(mac)) return skip(`OpenSSH does not offer ${mac}`)
      const r = await ssh({ options: { Ciphers: "aes128-ctr", MACs: mac }, extraArgs: ["-v"] })
      expect(r.stdout).toBe("ok\n")
      expect(negotiatedLine(r.stderr, /debug1: kex: client->server cipher:/)).toContain(`MAC: ${mac} `)
    })
  }

  for (const hostKey of SUPPORTED.hostKey) {
    it(`host key ${hostKey}`, async ({ skip }) => {
      if (!theirs.hostKeyAlgorithms.includes(hostKey)) return skip(`OpenSSH does not offer ${hostKey}`)
      if (hostKey === "ssh-dss" && !clientKeys.dsa) return skip("no DSA key")
      const r = await ssh({ options: { HostKeyAlgorithms: hostKey }, extraArgs: ["-v"] })
      expect(r.stdout).toBe("ok\n")
      expect(negotiatedLine(r.stderr, /debug1: kex: host key algorithm:/)).toContain(hostKey)
    })
  }

  it("zlib@openssh.com compression", async () => {
    const r = await ssh({ options: { Compression: "yes" }, extraArgs: ["-v"], command: "head -c 100000 /dev/zero | wc -c" })
    expect(r.stdout.trim()).toBe("100000")
    expect(r.stderr).toMatch(/compression: zlib@openssh.com/)
  })

  it("rekeys started by ssh (RekeyLimit) keep a 4 MiB round trip intact", async () => {
    const data = "0123456789abcdef".repeat(256 * 1024)
    const r = await ssh({ options: { RekeyLimit: "256K" }, command: "cat", stdin: data, extraArgs: ["-v"] })
    expect(r.stdout.length).toBe(data.length)
    expect(r.stdout === data).toBe(true)
    // ssh -v logs each key exchange it starts
    expect(r.stderr.split("SSH2_MSG_KEXINIT sent").length - 1).toBeGreaterThanOrEqual(4)
  })

  for (const name of ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa", "dsa"]) {
    it(`publickey auth with an ssh-keygen ${name} key`, async ({ skip }) => {
      if (!clientKeys[name]) return skip(`this OpenSSH has no ${name} keys`)
      const options: Record<string, string> = { PreferredAuthentications: "publickey" }
      if (name === "dsa") options.PubkeyAcceptedAlgorithms = "+ssh-dss"
      const r = await ssh({ identityFile: clientKeys[name]!.path, options })
      expect(r.stderr).toBe("")
      expect(r.stdout).toBe("ok\n")
    })
  }

  for (const alg of ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]) {
    it(`publickey auth with an RSA key signing ${alg}`, async () => {
      const r = await ssh({ identityFile: clientKeys.rsa!.path, options: { PubkeyAcceptedAlgorithms: alg }, extraArgs: ["-v"] })
      expect(r.stdout).toBe("ok\n")
      // PubkeyAcceptedAlgorithms leaves the client this one signature algorithm
      expect(r.stderr).toMatch(/Authenticated to .* using "publickey"/)
    })
  }

  it("refuses a key that is not authorized", async () => {
    const other = await generateKey(join(dir, "id_other"), "ed25519")
    const r = await ssh({ identityFile: other.privatePath, options: { PreferredAuthentications: "publickey" } })
    expect(r.exitCode).toBe(255)
    expect(r.stderr).toMatch(/Permission denied \(publickey,password,keyboard-interactive\)/)
  })

  it("password auth through sshpass", async () => {
    const r = await ssh({
      identityFile: null,
      password: PASSWORD,
      passwordVia: "sshpass",
      options: { PreferredAuthentications: "password" },
      command: "echo pw"
    })
    expect(r.stdout).toBe("pw\n")
  })

  it("keyboard-interactive auth through SSH_ASKPASS", async () => {
    const r = await ssh({
      identityFile: null,
      password: PASSWORD,
      passwordVia: "askpass",
      options: { PreferredAuthentications: "keyboard-interactive" },
      command: "echo kbd"
    })
    expect(r.stdout).toBe("kbd\n")
  })

  it("a wrong password is refused", async () => {
    const r = await ssh({ identityFile: null, password: "wrong", options: { PreferredAuthentications: "password" } })
    expect(r.exitCode).toBe(255)
    expect(r.stderr).toMatch(/Permission denied/)
  })

  it("exit codes, stderr and stdin", async () => {
    const failed = await ssh({ command: "echo oops >&2; exit 42" })
    expect(failed.exitCode).toBe(42)
    expect(failed.stderr).toBe("oops\n")
    const counted = await ssh({ command: "wc -c", stdin: "x".repeat(300_000) })
    expect(counted.stdout.trim()).toBe("300000")
  })

  it("a process killed by a signal is reported as killed", async () => {
    const r = await ssh({ command: "kill -TERM $$", extraArgs: ["-v"] })
    // OpenSSH has no exit status to pass on: it exits 255 after the exit-signal request
    expect(r.exitCode).toBe(255)
    expect(r.stderr).toMatch(/channel 0 rtype exit-signal/)
    expect(r.stderr).not.toMatch(/rtype exit-status/)
  })

  it("SetEnv reaches the command", async () => {
    const r = await ssh({ options: { SetEnv: "EFFECT_SSH_A=alpha EFFECT_SSH_B=beta" }, command: "echo $EFFECT_SSH_A-$EFFECT_SSH_B" })
    expect(r.stdout).toBe("alpha-beta\n")
  })

  it("ssh -s runs a subsystem", async () => {
    const r = await ssh({ command: "upper", extraArgs: ["-s"], stdin: "through the subsystem\n" })
    expect(r.stdout).toBe("THROUGH THE SUBSYSTEM\n")
  })

  it("ssh -tt gets a pty: a shell with a terminal, exit status returned", async () => {
    const r = await ssh({ command: null, extraArgs: ["-tt"], stdin: "tty; echo TERM=$TERM; exit 5\n" })
    expect(r.stdout).toMatch(/\/dev\/pts\/\d+/)
    expect(r.stdout).toMatch(/TERM=\S+/)
    expect(r.exitCode).toBe(5)
  })

  it("ssh -tt with a command runs it on a pty", async () => {
    const r = await ssh({ command: "test -t 0 && test -t 1 && echo on-a-tty", extraArgs: ["-tt"] })
    expect(r.stdout).toBe("on-a-tty\r\n")
    expect(r.exitCode).toBe(0)
  })

  it("a shell without a pty reads commands from stdin", async () => {
    const r = await ssh({ command: null, extraArgs: ["-T"], stdin: "echo from-shell; exit 6\n" })
    expect(r.stdout).toBe("from-shell\n")
    expect(r.exitCode).toBe(6)
  })
})
