import * as readline from "node:readline/promises"
import * as Effect from "effect/Effect"
import * as KnownHosts from "../KnownHosts.js"
import type { HostKeyInfo, HostVerifier } from "../SshClient.js"

export interface KnownHostsPolicy {
  readonly file: string
  /** OpenSSH's StrictHostKeyChecking: yes, accept-new, no (or off), ask. */
  readonly strict: string
  /** Whether "ask" may prompt on the terminal. */
  readonly interactive: boolean
  /** HashKnownHosts: record new hosts hashed. */
  readonly hash?: boolean
}

const POLICIES: ReadonlyArray<KnownHosts.StrictHostKeyChecking> = ["yes", "accept-new", "no", "off", "ask"]

/**
 * The command line's host verification: `KnownHosts.verifier` with OpenSSH's policies, asking
 * on the terminal for "ask" and printing notices to stderr.
 */
export function knownHostsVerifier(policy: KnownHostsPolicy): HostVerifier {
  const strict = POLICIES.find((p) => p === policy.strict) ?? "yes"
  return KnownHosts.verifier({
    file: policy.file,
    strict,
    ...(policy.hash !== undefined ? { hash: policy.hash } : {}),
    ...(policy.interactive ? { ask: (info: HostKeyInfo, keyType: string) => Effect.promise(() => ask(info, keyType)) } : {}),
    onNotice: (message) => process.stderr.write(`${message}\n`)
  })
}

async function ask(info: HostKeyInfo, keyType: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = await rl.question(
      `The authenticity of host '${info.host}' can't be established.\n${keyType} key fingerprint is ${info.fingerprint}.\n` +
        `Are you sure you want to continue connecting (yes/no)? `
    )
    return answer.trim().toLowerCase() === "yes"
  } finally {
    rl.close()
  }
}
