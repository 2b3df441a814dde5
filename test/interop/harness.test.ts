/**
 * Proves the interop harness with OpenSSH on both ends: if these fail, interop failures
 * elsewhere say nothing about effect-ssh.
 */
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises"
import { createConnection } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type GeneratedKey, generateKey, runSsh, startAgent } from "../support/openssh.js"
import { describeWithPeers, pamRequirement, testUser, testUserRequirement } from "../support/peers.js"
import { type Sshd, allAlgorithmsConfig, startSshd, supportedHostKeySpecs } from "../support/sshd.js"

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

let keyDir: string
let clientKey: GeneratedKey
let strangerKey: GeneratedKey

beforeAll(async () => {
  keyDir = await mkdtemp(join(tmpdir(), "effect-ssh-harness-"))
})
afterAll(async () => {
  await rm(keyDir, { recursive: true, force: true })
})

describeWithPeers(["sshd", "ssh", "ssh-keygen"], "private sshd with publickey auth", () => {
  let sshd: Sshd

  beforeAll(async () => {
    clientKey = await generateKey(join(keyDir, "id_ed25519"), "ed25519")
    strangerKey = await generateKey(join(keyDir, "id_stranger"), "ed25519")
    sshd = await startSshd({ authorizedKeys: [clientKey.publicLine] })
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  const ssh = (command: string, extra: { identityFile?: string; options?: Record<string, string> } = {}) =>
    runSsh({
      port: sshd.port,
      user: sshd.user,
      identityFile: extra.identityFile ?? clientKey.privatePath,
      command,
      ...(extra.options !== undefined ? { options: extra.options } : {})
    })

  it("runs a command and returns its stdout", async () => {
    const result = await ssh("echo hello")
    expect(result.stderr + sshd.logs()).not.toContain("Permission denied")
    expect(result.stdout).toBe("hello\n")
    expect(result.exitCode).toBe(0)
    expect(sshd.logs()).toContain(`Accepted publickey for ${sshd.user}`)
  })

  it("propagates the remote exit code", async () => {
    const result = await ssh("exit 7")
    expect(result.exitCode).toBe(7)
  })

  it("rejects a key that is not in authorized_keys", async () => {
    const result = await ssh("echo hello", { identityFile: strangerKey.privatePath })
    expect(result.exitCode).toBe(255)
    expect(result.stdout).toBe("")
    expect(result.stderr).toContain("Permission denied")
  })

  it("accepts a key added to authorized_keys while running", async () => {
    await sshd.addAuthorizedKey(strangerKey.publicLine)
    const result = await ssh("echo late", { identityFile: strangerKey.privatePath })
    expect(result.stdout).toBe("late\n")
  })

  it("serves every host key it reports, with the reported fingerprint", async () => {
    const expectedTypes = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]
    if ((await supportedHostKeySpecs()).includes("dsa")) expectedTypes.push("ssh-dss")
    expect(sshd.hostKeys.map((key) => key.type)).toEqual(expectedTypes)
    for (const key of sshd.hostKeys) {
      const algorithm = key.type === "ssh-rsa" ? "rsa-sha2-512" : key.type
      const result = await ssh("true", { options: { HostKeyAlgorithms: algorithm, LogLevel: "DEBUG1" } })
      expect(result.exitCode, `${key.spec}: ${result.stderr}`).toBe(0)
      expect(result.stderr).toContain(`Server host key: ${key.type} ${key.fingerprint}`)
    }
  })

  it("gives known_hosts lines that ssh accepts with strict checking", async () => {
    const knownHosts = join(keyDir, "known_hosts")
    await writeFile(knownHosts, sshd.knownHostsLines().join("\n") + "\n")
    const result = await ssh("echo known", {
      options: { StrictHostKeyChecking: "yes", UserKnownHostsFile: knownHosts }
    })
    expect(result.stdout, result.stderr).toBe("known\n")
  })

  it("uses a key held by a private ssh-agent", async () => {
    const agent = await startAgent()
    try {
      expect(await agent.list()).toEqual([])
      await agent.add(clientKey.privatePath)
      const held = await agent.list()
      expect(held.map((line) => line.split(" ").slice(0, 2).join(" "))).toEqual([
        clientKey.publicLine.split(" ").slice(0, 2).join(" ")
      ])
      const result = await runSsh({
        port: sshd.port,
        user: sshd.user,
        command: "echo via-agent",
        options: { IdentityAgent: agent.socket, IdentitiesOnly: "no", PubkeyAuthentication: "yes" }
      })
      expect(result.stdout, result.stderr).toBe("via-agent\n")
    } finally {
      await agent.stop()
    }
    expect(isAlive(agent.pid)).toBe(false)
    await expect(stat(agent.socket)).rejects.toThrow()
  })
})

describeWithPeers(["sshd", "ssh", "ssh-keygen"], "sshd with every algorithm enabled", () => {
  let sshd: Sshd
  let key: GeneratedKey

  beforeAll(async () => {
    key = await generateKey(join(keyDir, "id_legacy"), "ed25519")
    sshd = await startSshd({ authorizedKeys: [key.publicLine], config: await allAlgorithmsConfig() })
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  it("negotiates legacy algorithms that the defaults refuse", async () => {
    const legacy = {
      KexAlgorithms: "diffie-hellman-group1-sha1",
      Ciphers: "3des-cbc",
      MACs: "hmac-md5",
      HostKeyAlgorithms: "ssh-rsa"
    }
    const result = await runSsh({
      port: sshd.port,
      user: sshd.user,
      identityFile: key.privatePath,
      command: "echo legacy",
      options: { ...legacy, LogLevel: "DEBUG1" }
    })
    expect(result.stdout, result.stderr + sshd.logs()).toBe("legacy\n")
    expect(result.stderr).toContain("kex: algorithm: diffie-hellman-group1-sha1")
    expect(result.stderr).toContain("cipher: 3des-cbc MAC: hmac-md5")
  })
})

describeWithPeers(["sshd", "ssh", "ssh-keygen"], "sshd lifecycle", () => {
  it("stop() kills the listener and its sessions and removes the dir", async () => {
    const key = await generateKey(join(keyDir, "id_lifecycle"), "ed25519")
    const sshd = await startSshd({ authorizedKeys: [key.publicLine], hostKeys: ["ed25519"] })
    expect(isAlive(sshd.pid)).toBe(true)
    expect(await accepts(sshd.port)).toBe(true)

    const started = Date.now()
    const session = runSsh({
      port: sshd.port,
      user: sshd.user,
      identityFile: key.privatePath,
      command: "echo started; sleep 60",
      timeoutMs: 30_000
    })
    while (!sshd.logs().includes("Starting session")) {
      if (Date.now() - started > 10_000) throw new Error(`session never started:\n${sshd.logs()}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await sshd.stop()

    expect(isAlive(sshd.pid)).toBe(false)
    expect(sshd.running()).toBe(false)
    expect(await accepts(sshd.port)).toBe(false)
    await expect(stat(sshd.dir)).rejects.toThrow()
    const result = await session
    // the session ended because its sshd processes were killed, not by the client timeout
    expect(result.timedOut).toBe(false)
    expect(Date.now() - started).toBeLessThan(20_000)
  })

  it("reports sshd's own error when the config is invalid", async () => {
    await expect(startSshd({ hostKeys: ["ed25519"], config: { NoSuchKeyword: "yes" } })).rejects.toThrow(
      /NoSuchKeyword|Bad configuration option/
    )
  })
})

describeWithPeers(["sshd", "ssh", "sshpass", testUserRequirement], "password auth for the test user", () => {
  let sshd: Sshd

  beforeAll(async () => {
    sshd = await startSshd({ user: testUser.name, hostKeys: ["ed25519"] })
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  const withPassword = (password: string, passwordVia: "sshpass" | "askpass") =>
    runSsh({
      port: sshd.port,
      user: testUser.name,
      password,
      passwordVia,
      command: "id -un; pwd",
      options: { PreferredAuthentications: "password" }
    })

  it("logs in with the right password through sshpass", async () => {
    const result = await withPassword(testUser.password, "sshpass")
    expect(result.stdout, result.stderr + sshd.logs()).toBe(`${testUser.name}\n${testUser.home}\n`)
    expect(sshd.logs()).toContain(`Accepted password for ${testUser.name}`)
  })

  it("logs in with the right password through SSH_ASKPASS", async () => {
    const result = await withPassword(testUser.password, "askpass")
    expect(result.stdout, result.stderr).toBe(`${testUser.name}\n${testUser.home}\n`)
  })

  it("refuses a wrong password", async () => {
    const result = await withPassword("not-the-password", "askpass")
    expect(result.exitCode).toBe(255)
    expect(result.stdout).toBe("")
    expect(sshd.logs()).toContain(`Failed password for ${testUser.name}`)
  })
})

describeWithPeers(
  ["sshd", "ssh", "sshpass", testUserRequirement, pamRequirement],
  "keyboard-interactive through PAM",
  () => {
    let sshd: Sshd

    beforeAll(async () => {
      sshd = await startSshd({ user: testUser.name, pam: true, hostKeys: ["ed25519"] })
    })
    afterAll(async () => {
      await sshd?.stop()
    })

    const kbdInteractive = (password: string) =>
      runSsh({
        port: sshd.port,
        user: testUser.name,
        password,
        command: "echo kbd-ok",
        options: { PreferredAuthentications: "keyboard-interactive" }
      })

    it("logs in by answering the PAM password prompt", async () => {
      const result = await kbdInteractive(testUser.password)
      expect(result.stdout, result.stderr + sshd.logs()).toBe("kbd-ok\n")
      expect(result.exitCode).toBe(0)
      expect(sshd.logs()).toContain(`Accepted keyboard-interactive/pam for ${testUser.name}`)
    })

    it("refuses a wrong answer", async () => {
      const result = await kbdInteractive("not-the-password")
      expect(result.exitCode).not.toBe(0)
      expect(result.stdout).toBe("")
    })
  }
)
