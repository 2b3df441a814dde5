/**
 * The `effect-ssh` command line against a private sshd: exec with OpenSSH-style options,
 * known_hosts policies, and probe.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { runCli } from "../support/cli.js"
import { generateKey, sshKeygen } from "../support/openssh.js"
import { describeWithPeers, testUser, testUserRequirement } from "../support/peers.js"
import { startSshd } from "../support/sshd.js"
import type { Sshd } from "../support/sshd.js"

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => runCli(args, { SSH_AUTH_SOCK: "", HOME: home, ...env })

let home = ""

describeWithPeers(["sshd", "ssh-keygen", testUserRequirement], "effect-ssh command line", () => {
  let sshd: Sshd
  let key: string
  let knownHosts: string

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), "effect-ssh-cli-"))
    const k = await generateKey(join(home, "id_ed25519"), "ed25519")
    key = k.privatePath
    knownHosts = join(home, "known_hosts")
    sshd = await startSshd({ authorizedKeys: [k.publicLine], hostKeys: ["ed25519", "ecdsa-256", "rsa-3072"] })
  }, 60_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(home, { recursive: true, force: true })
  })

  const base = () => ["-p", String(sshd.port), "-i", key, "-o", `UserKnownHostsFile=${knownHosts}`]

  it("exec streams output and returns the remote exit status", async () => {
    const r = await cli(["exec", ...base(), "-o", "StrictHostKeyChecking=no", "-n", `${sshd.user}@127.0.0.1`, "echo out; echo err >&2; exit 5"])
    expect(r.stdout).toBe("out\n")
    expect(r.stderr).toContain("err\n")
    expect(r.code).toBe(5)
  })

  it("exec forwards stdin", async () => {
    const r = await runCli(["exec", ...base(), "-o", "StrictHostKeyChecking=no", "-l", sshd.user, "127.0.0.1", "tr", "a-z", "A-Z"], { SSH_AUTH_SOCK: "", HOME: home }, "hello\n")
    expect(r.stdout).toBe("HELLO\n")
  })

  it("-v prints the negotiated algorithms; -o picks them", async () => {
    const r = await cli([
      "exec",
      ...base(),
      "-v",
      "-n",
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "Ciphers=aes256-ctr",
      "-o",
      "MACs=hmac-sha2-512",
      "-o",
      "KexAlgorithms=ecdh-sha2-nistp384",
      "-o",
      "HostKeyAlgorithms=ecdsa-sha2-nistp256",
      `${sshd.user}@127.0.0.1`,
      "true"
    ])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("kex ecdh-sha2-nistp384")
    expect(r.stderr).toContain("host key ecdsa-sha2-nistp256")
    expect(r.stderr).toContain("cipher aes256-ctr / aes256-ctr, MAC hmac-sha2-512")
  })

  it("an unknown algorithm in -o is a clear error", async () => {
    const r = await cli(["exec", ...base(), "-o", "Ciphers=rot13", `${sshd.user}@127.0.0.1`, "true"])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/unknown cipher algorithm "rot13"/)
  })

  it("StrictHostKeyChecking: yes refuses an unknown host, accept-new records it, a changed key is refused", async () => {
    await rm(knownHosts, { force: true })
    const refused = await cli(["exec", ...base(), "-n", "-o", "StrictHostKeyChecking=yes", `${sshd.user}@127.0.0.1`, "true"])
    expect(refused.code).toBe(255)
    expect(refused.stderr).toMatch(/No ssh-ed25519 host key is known/)

    const added = await cli(["exec", ...base(), "-n", "-o", "StrictHostKeyChecking=accept-new", `${sshd.user}@127.0.0.1`, "true"])
    expect(added.code).toBe(0)
    const line = (await readFile(knownHosts, "utf8")).trim()
    expect(line.startsWith(`[127.0.0.1]:${sshd.port} ssh-ed25519 `)).toBe(true)

    // OpenSSH's own ssh-keygen finds the host in the file we wrote
    const found = await sshKeygen(["-F", `[127.0.0.1]:${sshd.port}`, "-f", knownHosts])
    expect(found.stdout).toContain("ssh-ed25519")

    const known = await cli(["exec", ...base(), "-n", "-o", "StrictHostKeyChecking=yes", `${sshd.user}@127.0.0.1`, "true"])
    expect(known.code).toBe(0)

    // replace the recorded key with another one: a man in the middle, as far as we can tell
    const other = await generateKey(join(home, "other"), "ed25519")
    await writeFile(knownHosts, `[127.0.0.1]:${sshd.port} ${other.publicLine.split(" ").slice(0, 2).join(" ")}\n`)
    const changed = await cli(["exec", ...base(), "-n", "-o", "StrictHostKeyChecking=no", `${sshd.user}@127.0.0.1`, "true"])
    expect(changed.code).toBe(255)
    expect(changed.stderr).toContain("REMOTE HOST IDENTIFICATION HAS CHANGED")
    expect(changed.stderr).toContain(`${knownHosts}:1`)
  })

  it("verifies hosts hashed by ssh-keygen -H", async () => {
    await writeFile(knownHosts, `${sshd.knownHostsLines().join("\n")}\n`)
    await sshKeygen(["-H", "-f", knownHosts])
    expect(await readFile(knownHosts, "utf8")).toMatch(/^\|1\|/)
    const r = await cli(["exec", ...base(), "-n", "-o", "StrictHostKeyChecking=yes", `${sshd.user}@127.0.0.1`, "echo hashed"])
    expect(r.stdout).toBe("hashed\n")
  })

  it("a password comes from SSH_PASSWORD", async () => {
    const r = await cli(
      ["exec", "-p", String(sshd.port), "-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${knownHosts}`, "-n", `${testUser.name}@127.0.0.1`, "whoami"],
      { SSH_PASSWORD: testUser.password }
    )
    expect(r.stdout.trim()).toBe(testUser.name)
  })

  it("probe prints identification, algorithms, host key fingerprints as ssh-keygen -l does, and auth methods", async () => {
    const r = await cli(["probe", "-p", String(sshd.port), "127.0.0.1"])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^identification: SSH-2\.0-OpenSSH_/m)
    expect(r.stdout).toMatch(/^kex: .*curve25519-sha256/m)
    for (const hostKey of sshd.hostKeys) {
      // ssh-keygen -l prints "BITS SHA256:... COMMENT (TYPE)"
      const listed = await sshKeygen(["-l", "-f", `${hostKey.path}.pub`])
      const [bits, fp, , ...rest] = listed.stdout.trim().split(" ")
      expect(r.stdout).toContain(`${bits} ${fp} 127.0.0.1 ${rest.at(-1)}`)
    }
    expect(r.stdout).toMatch(/^auth methods: .*publickey/m)
  })

  it("a missing destination is a usage error (exit 2)", async () => {
    const r = await cli(["exec", "-p", "22"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("usage:")
  })

})
