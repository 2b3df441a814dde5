/**
 * What the interop tests need from the machine: OpenSSH/PuTTY binaries ("peers") and the
 * unprivileged test account. A missing requirement fails the suite under `CI=true` (CI
 * installs everything, so a gap there is a bug in .ci/run) and skips it loudly elsewhere.
 */
import { spawnSync } from "node:child_process"
import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"
import { describe, it } from "vitest"

/**
 * The account password and keyboard-interactive tests log in as.
 * Created by .ci/setup-test-user.sh, which must use the same name and password.
 */
export const testUser = {
  name: "effectssh",
  password: "effect-ssh-test-pw",
  home: "/home/effectssh"
} as const

/** Debian package that provides each binary, for the "how to fix" part of messages. */
const debianPackages: Record<string, string> = {
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  "ssh-agent": "openssh-client",
  "ssh-add": "openssh-client",
  "ssh-keyscan": "openssh-client",
  sftp: "openssh-client",
  scp: "openssh-client",
  "sftp-server": "openssh-sftp-server",
  puttygen: "putty-tools",
  sshpass: "sshpass"
}

// sshd and sftp-server live outside a normal user's PATH.
const extraDirs = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/lib/openssh"]

const found = new Map<string, string | undefined>()

/** Absolute path of `binary` (searched in PATH, then the sbin dirs), or undefined. */
export function findPeer(binary: string): string | undefined {
  if (found.has(binary)) return found.get(binary)
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter((d) => d !== ""), ...extraDirs]
  let path: string | undefined
  for (const dir of dirs) {
    const candidate = join(dir, binary)
    try {
      accessSync(candidate, constants.X_OK)
      path = candidate
      break
    } catch {
      // not in this dir
    }
  }
  found.set(binary, path)
  return path
}

/** Whether `binary` is installed. */
export function hasPeer(binary: string): boolean {
  return findPeer(binary) !== undefined
}

/** Absolute path of `binary`; throws a message naming the Debian package when it is missing. */
export function requirePeer(binary: string): string {
  const path = findPeer(binary)
  if (path === undefined) throw new Error(missingBinaryReason(binary))
  return path
}

function missingBinaryReason(binary: string): string {
  const pkg = debianPackages[binary]
  return pkg === undefined
    ? `${binary} not found in PATH or /usr/sbin`
    : `${binary} not found (install the Debian package ${pkg}; .ci/run does it)`
}

/** Whether the test account exists on this machine. */
export function testUserExists(): boolean {
  return spawnSync("id", ["-u", testUser.name], { stdio: "ignore" }).status === 0
}

export const isRoot = (): boolean => process.getuid?.() === 0

/**
 * Something a suite needs from the machine. `missing()` returns why it is unmet, or undefined.
 * Plain strings given to `describeWithPeers` are binary names.
 */
export interface Requirement {
  readonly name: string
  readonly missing: () => string | undefined
}

/**
 * The test account, usable only when the tests run as root: a non-root sshd can authenticate
 * nobody but the user it runs as, and cannot read /etc/shadow for passwords.
 */
export const testUserRequirement: Requirement = {
  name: `test user ${testUser.name}`,
  missing: () => {
    if (!isRoot()) return `not running as root: sshd can only check passwords of other users as root`
    if (!testUserExists()) return `user ${testUser.name} does not exist (run .ci/setup-test-user.sh as root)`
    return undefined
  }
}

/** PAM, which sshd needs for keyboard-interactive on Linux. */
export const pamRequirement: Requirement = {
  name: "PAM for sshd",
  missing: () => {
    try {
      accessSync("/etc/pam.d/sshd", constants.R_OK)
      return undefined
    } catch {
      return "/etc/pam.d/sshd not found (installed by the Debian package openssh-server)"
    }
  }
}

const asRequirement = (peer: string | Requirement): Requirement =>
  typeof peer === "string"
    ? { name: peer, missing: () => (hasPeer(peer) ? undefined : missingBinaryReason(peer)) }
    : peer

/** Reasons, one per unmet requirement; empty when everything is there. */
export function missingPeers(peers: ReadonlyArray<string | Requirement>): Array<string> {
  const reasons: Array<string> = []
  for (const peer of peers) {
    const reason = asRequirement(peer).missing()
    if (reason !== undefined) reasons.push(reason)
  }
  return reasons
}

const warned = new Set<string>()

/**
 * `describe(name, fn)` when every peer is present. Otherwise, under `CI=true` it registers one
 * failing test that names what is missing; elsewhere it skips the suite and warns once per reason.
 */
export function describeWithPeers(
  peers: ReadonlyArray<string | Requirement>,
  name: string,
  fn: () => void
): void {
  const reasons = missingPeers(peers)
  if (reasons.length === 0) {
    describe(name, fn)
    return
  }
  if (process.env.CI === "true") {
    describe(name, () => {
      it(`has its peers (${reasons.join("; ")})`, () => {
        throw new Error(`interop suite "${name}" cannot run under CI=true: ${reasons.join("; ")}`)
      })
    })
    return
  }
  for (const reason of reasons) {
    if (warned.has(reason)) continue
    warned.add(reason)
    console.warn(`\n!!! SKIPPING interop tests: ${reason}. Under CI=true this is a failure. !!!\n`)
  }
  describe.skip(name, fn)
}
