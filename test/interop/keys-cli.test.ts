/**
 * `effect-ssh keygen`, `fingerprint` and `cert` against OpenSSH (ssh-keygen reads what we write,
 * fingerprints print byte for byte as `ssh-keygen -l`, sshd accepts our keys and certificates),
 * and known_hosts files crossing between `ssh` (HashKnownHosts) and our verifier.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { afterAll, beforeAll, expect, it } from "vitest"
import { cert } from "../../src/cli/cert.js"
import { fingerprint } from "../../src/cli/fingerprint.js"
import { keygen } from "../../src/cli/keygen.js"
import * as KnownHosts from "../../src/KnownHosts.js"
import { parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import { runCli } from "../support/cli.js"
import type { CliResult } from "../support/cli.js"
import { runSsh, sshKeygen } from "../support/openssh.js"
import { describeWithPeers } from "../support/peers.js"
import { startSshd, type Sshd } from "../support/sshd.js"

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => runCli(args, { SSH_PASSPHRASE: "", ...env })

/**
 * Runs a command in this process with its output captured: starting the CLI costs seconds on a
 * loaded machine, so only some runs go through the real binary.
 */
async function inProcess(
  command: (argv: ReadonlyArray<string>) => Effect.Effect<number, unknown>,
  argv: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<CliResult> {
  const out: string[] = []
  const err: string[] = []
  const write = { out: process.stdout.write, err: process.stderr.write }
  const saved = { ...process.env }
  Object.assign(process.env, { SSH_PASSPHRASE: "", ...env })
  process.stdout.write = ((chunk: string) => {
    out.push(chunk)
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string) => {
    err.push(chunk)
    return true
  }) as typeof process.stderr.write
  try {
    const exit = await Effect.runPromiseExit(Effect.suspend(() => command(argv)))
    return { code: Exit.isSuccess(exit) ? exit.value : 255, stdout: out.join(""), stderr: err.join("") + (Exit.isFailure(exit) ? String(exit.cause) : "") }
  } finally {
    process.stdout.write = write.out
    process.stderr.write = write.err
    process.env = saved
  }
}

const firstTwo = (line: string) => line.trim().split(" ").slice(0, 2).join(" ")

describeWithPeers(["sshd", "ssh", "ssh-keygen"], "key commands and known_hosts against OpenSSH", () => {
  let dir: string
  let sshd: Sshd
  let caPath: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-keycli-"))
    await chmod(dir, 0o755)
    caPath = join(dir, "user_ca")
    const made = await cli(["keygen", "-t", "ed25519", "-C", "user ca", "-f", caPath])
    expect(made.code, made.stderr).toBe(0)
    sshd = await startSshd({ hostKeys: ["ed25519", "ecdsa-256"], config: { TrustedUserCAKeys: `${caPath}.pub` } })
  }, 60_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const keyTypes: ReadonlyArray<[string, ReadonlyArray<string>]> = [
    ["ed25519", ["-t", "ed25519"]],
    ["ecdsa-256", ["-t", "ecdsa"]],
    ["ecdsa-384", ["-t", "ecdsa", "-b", "384"]],
    ["ecdsa-521", ["-t", "ecdsa", "-b", "521"]],
    ["rsa-2048", ["-t", "rsa", "-b", "2048"]]
  ]

  it("keygen writes keys ssh-keygen reads with their passphrase, and keygen -y prints the public key", async () => {
    for (const [name, args] of keyTypes) {
      const path = join(dir, `enc_${name}`)
      const r = await cli(["keygen", ...args, "-N", "s3cret pass", "-C", `${name} key`, "-f", path])
      expect(r.code, r.stderr).toBe(0)
      const pubLine = (await readFile(`${path}.pub`, "utf8")).trim()
      expect(pubLine.endsWith(` ${name} key`)).toBe(true)
      const theirs = await sshKeygen(["-y", "-P", "s3cret pass", "-f", path])
      expect(firstTwo(theirs.stdout)).toBe(firstTwo(pubLine))
      const ours = await inProcess(keygen, ["-y", "-f", path], { SSH_PASSPHRASE: "s3cret pass" })
      expect(ours.stdout.trim()).toBe(pubLine)
    }
    const printed = await cli(["keygen", "-y", "-f", join(dir, "enc_ed25519")], { SSH_PASSPHRASE: "s3cret pass" })
    expect(printed.stdout.trim()).toBe((await readFile(join(dir, "enc_ed25519.pub"), "utf8")).trim())
    const refused = await cli(["keygen", "-y", "-f", join(dir, "enc_ed25519")])
    expect(refused.code).toBe(255)
    expect(refused.stderr).toMatch(/encrypted/)
    // the passphrase may come from SSH_PASSPHRASE alone
    const viaEnv = join(dir, "env_key")
    expect((await inProcess(keygen, ["-t", "ed25519", "-f", viaEnv], { SSH_PASSPHRASE: "from env" })).code).toBe(0)
    expect((await sshKeygen(["-y", "-P", "from env", "-f", viaEnv])).exitCode).toBe(0)
    // an existing file is never overwritten
    expect((await inProcess(keygen, ["-t", "ed25519", "-f", viaEnv])).code).toBe(255)
  }, 120_000)

  it("sshd accepts keys made by keygen", async () => {
    for (const [name, args] of keyTypes) {
      const path = join(dir, `plain_${name}`)
      expect((await inProcess(keygen, [...args, "-f", path])).code).toBe(0)
      await chmod(path, 0o600)
      await sshd.addAuthorizedKey((await readFile(`${path}.pub`, "utf8")).trim())
      const r = await runSsh({ port: sshd.port, user: sshd.user, identityFile: path, command: "echo in" })
      expect(r.stdout, `${name}: ${r.stderr}`).toBe("in\n")
    }
  }, 120_000)

  it("fingerprint prints exactly what ssh-keygen -l prints, for every kind of file and both hashes", async () => {
    const files: string[] = []
    for (const [name, args] of keyTypes) {
      const path = join(dir, `fp_${name}`)
      await sshKeygen(["-q", ...args, "-N", "", "-C", `fp ${name}`, "-f", path])
      files.push(`${path}.pub`, path)
    }
    const noComment = join(dir, "fp_nocomment")
    await sshKeygen(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", noComment])
    files.push(`${noComment}.pub`, noComment)
    const cert = join(dir, "fp_ed25519-cert.pub")
    await sshKeygen(["-q", "-s", caPath, "-I", "fp", "-n", "x", join(dir, "fp_ed25519.pub")])
    files.push(cert)
    const authorizedKeys = join(dir, "fp_authorized_keys")
    // (the key without a comment comes first: ssh-keygen 9.2 repeats the previous line's comment for it)
    await writeFile(authorizedKeys, `# keys\n${(await readFile(`${noComment}.pub`, "utf8")).trim()}\ncommand="true",no-pty ${(await readFile(join(dir, "fp_rsa-2048.pub"), "utf8")).trim()}\n`)
    files.push(authorizedKeys)
    const knownHosts = join(dir, "fp_known_hosts")
    await writeFile(knownHosts, `${sshd.knownHostsLines().join("\n")}\n`)
    files.push(knownHosts)
    for (const file of files) {
      for (const hash of [undefined, "md5", "sha256"]) {
        const flags = hash === undefined ? [] : ["-E", hash]
        const theirs = await sshKeygen(["-l", ...flags, "-f", file])
        const ours = await inProcess(fingerprint, [...flags, file])
        expect(ours.stdout, `${file} ${hash ?? ""}: ${ours.stderr}`).toBe(theirs.stdout)
      }
    }
    const binary = await cli(["fingerprint", "-E", "md5", cert])
    expect(binary.stdout).toBe((await sshKeygen(["-l", "-E", "md5", "-f", cert])).stdout)
    const garbage = join(dir, "fp_garbage")
    await writeFile(garbage, "not a key\n")
    const refused = await cli(["fingerprint", garbage])
    expect(refused.code).toBe(255)
    expect(refused.stderr).toContain("is not a public key file")
  }, 120_000)

  it("cert writes user certificates sshd accepts through TrustedUserCAKeys, and host certificates", async () => {
    const key = join(dir, "certified")
    expect((await inProcess(keygen, ["-t", "ecdsa", "-C", "certified key", "-f", key])).code).toBe(0)
    await chmod(key, 0o600)
    // not in authorized_keys: only the certificate can let it in
    const before = await runSsh({ port: sshd.port, user: sshd.user, identityFile: key, command: "echo in", options: { CertificateFile: "/dev/null" } })
    expect(before.exitCode).toBe(255)
    for (const [index, validity] of ["-5m:+1h", "+52w", "always:forever", "20200101:20991231"].entries()) {
      const argv = ["-s", caPath, "-I", "alice@example", "-n", `${sshd.user},other`, "-V", validity, "-z", "5", `${key}.pub`]
      const signed = index === 0 ? await cli(["cert", ...argv]) : await inProcess(cert, argv)
      expect(signed.code, signed.stderr).toBe(0)
      expect(signed.stderr).toContain(`Signed user key ${key}-cert.pub: id "alice@example" serial 5`)
      const listed = await sshKeygen(["-L", "-f", `${key}-cert.pub`])
      expect(listed.stdout).toContain("ecdsa-sha2-nistp256-cert-v01@openssh.com user certificate")
      expect(listed.stdout).toContain("Serial: 5")
      const r = await runSsh({ port: sshd.port, user: sshd.user, identityFile: key, command: "echo certified" })
      expect(r.stdout, `${validity}: ${r.stderr}`).toBe("certified\n")
    }
    const expired = await inProcess(cert, ["-s", caPath, "-I", "old", "-n", sshd.user, "-V", "20200101:20200102", `${key}.pub`])
    expect(expired.code).toBe(0)
    expect((await runSsh({ port: sshd.port, user: sshd.user, identityFile: key, command: "true" })).exitCode).toBe(255)

    const host = await inProcess(cert, ["-s", caPath, "-I", "web", "-h", "-n", "web.example.com", `${key}.pub`])
    expect(host.code).toBe(0)
    expect((await sshKeygen(["-L", "-f", `${key}-cert.pub`])).stdout).toContain("host certificate")
    for (const bad of [["-V", "yesterday"], ["-z", "x"]]) {
      expect((await inProcess(cert, ["-s", caPath, "-I", "x", ...bad, `${key}.pub`])).code).not.toBe(0)
    }
  }, 120_000)

  const connectWith = (hostVerifier: SshClient.HostVerifier, key: string) =>
    Effect.runPromiseExit(
      Effect.scoped(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({
            host: sshd.host,
            port: sshd.port,
            username: sshd.user,
            auth: [SshAuth.privateKey(parsePrivateKey(yield* Effect.promise(() => readFile(key))))],
            hostVerifier
          })
          return new TextDecoder().decode((yield* ssh.exec("echo hi")).stdout)
        })
      )
    )

  it("verifies known_hosts written by ssh with HashKnownHosts, and ssh reads the hashed file we write", async () => {
    const key = join(dir, "plain_ed25519")
    const theirs = join(dir, "known_hosts_by_ssh")
    const first = await runSsh({
      port: sshd.port,
      user: sshd.user,
      identityFile: key,
      command: "true",
      options: { HashKnownHosts: "yes", StrictHostKeyChecking: "accept-new", UserKnownHostsFile: theirs }
    })
    expect(first.exitCode, first.stderr).toBe(0)
    expect(await readFile(theirs, "utf8")).toMatch(/^\|1\|/)
    const accepted = await connectWith(KnownHosts.verifier({ file: theirs, strict: "yes" }), key)
    expect(Exit.isSuccess(accepted) && accepted.value).toBe("hi\n")

    const ours = join(dir, "known_hosts_by_us")
    const notices: string[] = []
    const recorded = await connectWith(KnownHosts.verifier({ file: ours, strict: "accept-new", hash: true, onNotice: (m) => notices.push(m) }), key)
    expect(Exit.isSuccess(recorded)).toBe(true)
    expect(notices.join()).toContain("Permanently added")
    const text = await readFile(ours, "utf8")
    expect(text).toMatch(/^\|1\|[^ ]+ ssh-ed25519 /)
    expect(text).not.toContain("127.0.0.1")
    const strict = await runSsh({
      port: sshd.port,
      user: sshd.user,
      identityFile: key,
      command: "echo trusted",
      options: { StrictHostKeyChecking: "yes", UserKnownHostsFile: ours }
    })
    expect(strict.stdout, strict.stderr).toBe("trusted\n")
  }, 60_000)

  it("a changed host key is a typed error naming the file and line", async () => {
    const key = join(dir, "plain_ed25519")
    const file = join(dir, "known_hosts_changed")
    const other = join(dir, "other_host")
    await sshKeygen(["-q", "-t", "ed25519", "-N", "", "-f", other])
    await writeFile(file, `# first line\n[127.0.0.1]:${sshd.port} ${firstTwo(await readFile(`${other}.pub`, "utf8"))}\n`)
    const exit = await connectWith(KnownHosts.verifier({ file, strict: "no" }), key)
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isSuccess(exit) || exit.cause._tag !== "Fail") return
    const error = exit.cause.error
    expect(error._tag).toBe("SshTransportError")
    expect(error.message).toContain("REMOTE HOST IDENTIFICATION HAS CHANGED")
    expect(error.message).toContain(`${file}:2`)
    const cause = (error as { cause?: unknown }).cause as KnownHosts.KnownHostsError
    expect(cause).toBeInstanceOf(KnownHosts.KnownHostsError)
    expect(cause).toMatchObject({ reason: "mismatch", file, lines: [2] })
    // nothing was appended for the changed host
    expect((await readFile(file, "utf8")).split("\n").filter((l) => l !== "")).toHaveLength(2)
  }, 30_000)
})
