/**
 * `effect-ssh serve` driven by OpenSSH's `ssh`: authorized_keys and password from the
 * environment, --exec running real commands, and the start-up output and errors.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { serveRefusal, startServe } from "../support/serve.js"
import type { Serving } from "../support/serve.js"
import { generateKey, runSsh } from "../support/openssh.js"
import type { GeneratedKey, SshOptions } from "../support/openssh.js"
import { describeWithPeers } from "../support/peers.js"

describeWithPeers(["ssh", "ssh-keygen", "sshpass"], "effect-ssh serve", () => {
  let dir: string
  let key: GeneratedKey
  let other: GeneratedKey
  let server: Serving
  const PASSWORD_VAR = "EFFECT_SSH_SERVE_TEST_PW"

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-serve-"))
    key = await generateKey(join(dir, "id_ed25519"), "ed25519")
    other = await generateKey(join(dir, "id_other"), "ecdsa")
    await writeFile(join(dir, "authorized_keys"), `# a comment\n\n${key.publicLine}\n`)
    process.env[PASSWORD_VAR] = "serve-pw"
    server = await startServe(["--listen", "127.0.0.1:0", "--authorized-keys", join(dir, "authorized_keys"), "--password-env", PASSWORD_VAR, "--exec"])
  })
  afterAll(async () => {
    await server?.stop()
    delete process.env[PASSWORD_VAR]
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const ssh = (o: Partial<SshOptions>) => runSsh({ port: server.port, user: "anyone", command: "echo $USER", ...o })

  it("prints where it listens first, then the generated host key's fingerprint", () => {
    expect(server.lines[0]).toMatch(/^listening on 127\.0\.0\.1:\d+$/)
    expect(server.lines[1]).toMatch(/^host key ssh-ed25519 SHA256:[A-Za-z0-9+/]{43} \(generated in memory, not saved\)$/)
  })

  it("the host key ssh sees is the one printed", async () => {
    const r = await ssh({ identityFile: key.privatePath, extraArgs: ["-v"] })
    const printed = server.lines[1]!.split(" ")[3]
    expect(r.stderr).toContain(`Server host key: ssh-ed25519 ${printed}`)
  })

  it("an authorized key logs in and --exec runs the command as the serving user", async () => {
    const r = await ssh({ identityFile: key.privatePath })
    expect(r.exitCode).toBe(0)
    expect(r.stdout.trim()).toBe(userInfo().username)
  })

  it("a key not in authorized_keys is refused", async () => {
    const r = await ssh({ identityFile: other.privatePath, options: { PreferredAuthentications: "publickey" } })
    expect(r.exitCode).toBe(255)
    expect(r.stderr).toMatch(/Permission denied \(publickey,password,keyboard-interactive\)/)
  })

  it("the password from the environment variable logs in; a wrong one does not", async () => {
    const ok = await ssh({ password: "serve-pw", options: { PreferredAuthentications: "password" }, command: "echo pw-ok" })
    expect(ok.stdout).toBe("pw-ok\n")
    const bad = await ssh({ password: "serve-pw2", options: { PreferredAuthentications: "password" } })
    expect(bad.exitCode).toBe(255)
  })

  it("without --exec sessions are refused", async () => {
    const noExec = await startServe(["--listen", "127.0.0.1:0", "--authorized-keys", join(dir, "authorized_keys")])
    try {
      const r = await runSsh({ port: noExec.port, user: "u", identityFile: key.privatePath, command: "true", options: { LogLevel: "INFO" } })
      expect(r.exitCode).toBe(255)
      expect(r.stderr).toMatch(/administratively prohibited/)
      expect(noExec.lines).toContain("auth: publickey")
    } finally {
      expect(await noExec.stop()).toBe(0)
    }
  })

  it("refuses to start without authentication, on options lines, and on bad arguments", async () => {
    const run = serveRefusal
    expect(await run(["--listen", "127.0.0.1:0"])).toMatchObject({ code: 2, errors: expect.stringMatching(/no authentication configured/) })
    expect(await run(["--bogus"])).toMatchObject({ code: 2, errors: expect.stringMatching(/unknown argument --bogus/) })
    expect(await run(["--listen", "nowhere", "--password-env", PASSWORD_VAR])).toMatchObject({ code: 2 })
    const withOptions = join(dir, "with_options")
    await writeFile(withOptions, `no-pty ${key.publicLine}\nbogus-option ${other.publicLine}\n`)
    expect(await run(["--listen", "127.0.0.1:0", "--authorized-keys", withOptions])).toMatchObject({
      code: 1,
      errors: expect.stringMatching(/line 2: unknown option "bogus-option"/)
    })
    expect(await run(["--listen", "127.0.0.1:0", "--password-env", "EFFECT_SSH_UNSET_VAR"])).toMatchObject({ code: 1 })
    // the port is taken: a clean error, exit 1
    expect(await run(["--listen", `127.0.0.1:${server.port}`, "--password-env", PASSWORD_VAR])).toMatchObject({
      code: 1,
      errors: expect.stringMatching(/cannot listen on 127\.0\.0\.1:\d+/)
    })
  })
})
