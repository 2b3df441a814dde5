/**
 * The npm `ssh2` client against our server: exec, shell (with and without a pty), and its
 * password, publickey and keyboard-interactive implementations.
 */
import { Client } from "ssh2"
import type { ConnectConfig, ClientChannel } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { execSession } from "../../src/node/ExecSession.js"
import { encodeOpenSSHPrivateKey, generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { fingerprint } from "../../src/protocol/keys/publicKey.js"
import { passwordOrKeys, startServer } from "../support/ourServer.js"
import type { RunningServer } from "../support/ourServer.js"

const PASSWORD = "ssh2-interop-pw"
const clientKeys = { ed25519: generatePrivateKey("ed25519"), rsa: generatePrivateKey("rsa", { bits: 2048 }), ecdsa: generatePrivateKey("ecdsa") }
const hostKeys = [generatePrivateKey("ed25519"), generatePrivateKey("ecdsa", { bits: 384 }), generatePrivateKey("rsa", { bits: 2048 })]

interface Session {
  readonly client: Client
  readonly hostKeysAnnounced: Promise<number>
}

function connect(port: number, config: Partial<ConnectConfig>, onKeyboard?: (prompts: Array<{ prompt: string }>) => string[]): Promise<Session> {
  return new Promise((resolve, reject) => {
    const client = new Client()
    const hostKeysAnnounced = new Promise<number>((r) => client.on("hostkeys", (keys) => r(keys.length)))
    client.on("ready", () => resolve({ client, hostKeysAnnounced }))
    client.on("error", reject)
    if (onKeyboard) client.on("keyboard-interactive", (_name, _instructions, _lang, prompts, finish) => finish(onKeyboard(prompts)))
    client.connect({
      host: "127.0.0.1",
      port,
      username: "ssh2user",
      // pinned: ssh2 gives the raw key blob to the verifier
      hostVerifier: (key: Buffer) => hostKeys.some((k) => fingerprint(k.publicKey.blob) === fingerprint(key)),
      readyTimeout: 10_000,
      ...config
    })
  })
}

function collectChannel(channel: ClientChannel, input?: string): Promise<{ stdout: string; stderr: string; code: number | null; signal: string | undefined }> {
  return new Promise((resolve) => {
    let stdout = ""
    let stderr = ""
    let code: number | null = null
    let signal: string | undefined
    channel.on("data", (d: Buffer) => (stdout += d.toString()))
    channel.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    channel.on("exit", (c: number | null, s?: string) => {
      code = c
      signal = s
    })
    channel.on("close", () => resolve({ stdout, stderr, code, signal }))
    if (input !== undefined) channel.end(input)
  })
}

const exec = (client: Client, command: string, input?: string) =>
  new Promise<Awaited<ReturnType<typeof collectChannel>>>((resolve, reject) =>
    client.exec(command, (err, channel) => (err ? reject(err) : resolve(collectChannel(channel, input ?? ""))))
  )

describe("ssh2 client → our server", () => {
  let srv: RunningServer
  const open: Client[] = []

  beforeAll(async () => {
    srv = await startServer({
      hostKeys,
      authenticate: passwordOrKeys(PASSWORD, Object.values(clientKeys).map((k) => k.publicKey)),
      onSession: execSession()
    })
  })
  afterAll(async () => {
    for (const c of open) c.end()
    await srv?.stop()
  })

  const session = async (config: Partial<ConnectConfig>, onKeyboard?: (prompts: Array<{ prompt: string }>) => string[]) => {
    const s = await connect(srv.port, config, onKeyboard)
    open.push(s.client)
    return s
  }

  it("password auth, exec with exit status, stderr and stdin; host keys announced and proven after auth", async () => {
    // strictVendor off: ssh2 asks only OpenSSH servers to prove their announced keys
    const { client, hostKeysAnnounced } = await session({ password: PASSWORD, strictVendor: false })
    const r = await exec(client, "echo out; echo err >&2; exit 9")
    expect(r).toMatchObject({ stdout: "out\n", stderr: "err\n", code: 9 })
    const cat = await exec(client, "tr a-z A-Z", "from ssh2")
    expect(cat.stdout).toBe("FROM SSH2")
    // ssh2 emits only the keys whose hostkeys-prove-00 signature verified
    expect(await hostKeysAnnounced).toBe(hostKeys.length)
  })

  it("an exit signal is reported", async () => {
    const { client } = await session({ password: PASSWORD })
    const r = await exec(client, "kill -KILL $$")
    // ssh2 puts the "SIG" back in front of the exit-signal name
    expect(r.signal).toBe("SIGKILL")
  })

  for (const [name, key] of Object.entries(clientKeys)) {
    it(`publickey auth with an ${name} key`, async () => {
      const { client } = await session({ privateKey: encodeOpenSSHPrivateKey(key) })
      expect((await exec(client, "echo key")).stdout).toBe("key\n")
    })
  }

  it("a wrong password is refused", async () => {
    await expect(connect(srv.port, { password: "nope" })).rejects.toThrow(/All configured authentication methods failed/)
  })

  it("keyboard-interactive auth", async () => {
    const seen: string[] = []
    const { client } = await session({ tryKeyboard: true }, (prompts) => {
      seen.push(...prompts.map((p) => p.prompt))
      return [PASSWORD]
    })
    expect(seen).toEqual(["Password: "])
    expect((await exec(client, "echo kbd")).stdout).toBe("kbd\n")
  })

  it("shell without a pty", async () => {
    const { client } = await session({ password: PASSWORD })
    const channel = await new Promise<ClientChannel>((resolve, reject) => client.shell(false, (e, ch) => (e ? reject(e) : resolve(ch))))
    const r = await collectChannel(channel, "echo in-shell; exit 4\n")
    expect(r.stdout).toBe("in-shell\n")
    expect(r.code).toBe(4)
  })

  it("shell with a pty of the requested size", async () => {
    const { client } = await session({ password: PASSWORD })
    const channel = await new Promise<ClientChannel>((resolve, reject) =>
      client.shell({ term: "xterm", rows: 20, cols: 90 }, (e, ch) => (e ? reject(e) : resolve(ch)))
    )
    const done = collectChannel(channel)
    channel.write("stty size; tty; exit 0\n")
    const r = await done
    expect(r.stdout).toMatch(/20 90/)
    expect(r.stdout).toMatch(/\/dev\/pts\/\d+/)
    expect(r.code).toBe(0)
  })
})
