// What a host file given as --codex-bin is: a Linux ELF executable and its architecture, or a script
// (#!), read from its first bytes. Pure.

export type BinaryKind =
  { kind: 'elf'; os: 'linux' | 'other'; arch: string; bits: 32 | 64 } | { kind: 'script'; interpreter: string } | { kind: 'unknown' };

/** ELF e_machine → Docker's architecture names. */
const MACHINES: Record<number, string> = {
  0x3e: 'amd64',
  0xb7: 'arm64',
  0x03: '386',
  0x28: 'arm',
  0xf3: 'riscv64',
  0x15: 'ppc64le',
  0x16: 's390x',
};

/** The kind of an executable from its first (at least 64) bytes. */
export function binaryKind(head: Buffer): BinaryKind {
  if (head.length >= 20 && head[0] === 0x7f && head.toString('latin1', 1, 4) === 'ELF') {
    const bits = head[4] === 2 ? 64 : 32;
    const le = head[5] === 1;
    const osabi = head[7]!;
    const machine = le ? head.readUInt16LE(18) : head.readUInt16BE(18);
    // OSABI 0 (System V) is what Linux binaries carry; 3 is GNU/Linux. Others (FreeBSD 9, …) are not Linux.
    return {
      kind: 'elf',
      os: osabi === 0 || osabi === 3 ? 'linux' : 'other',
      arch: MACHINES[machine] ?? `machine-0x${machine.toString(16)}`,
      bits,
    };
  }
  if (head.length >= 2 && head[0] === 0x23 && head[1] === 0x21) {
    return {
      kind: 'script',
      interpreter: head
        .toString('latin1', 2)
        .split('\n')[0]!
        .trim()
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(0, 100),
    };
  }
  return { kind: 'unknown' };
}

/** Can the file run as Codex in an image of `platform` (linux/amd64)? A sentence either way. */
export function binaryFits(k: BinaryKind, platform: string): { ok: boolean; detail: string } {
  const [os = '', arch = ''] = platform.split('/');
  if (k.kind === 'elf') {
    if (k.os !== 'linux') return { ok: false, detail: 'an ELF executable for another operating system, not Linux' };
    if (os !== 'linux' || k.arch !== arch) return { ok: false, detail: `a Linux ${k.arch} executable, but the image is ${platform}` };
    return { ok: true, detail: `a Linux ${k.arch} executable, as the image (${platform})` };
  }
  if (k.kind === 'script') return { ok: true, detail: `a script for "${k.interpreter}" (run by that interpreter inside the sandbox)` };
  return { ok: false, detail: 'neither an ELF executable nor a script (#!): not a Linux binary' };
}
