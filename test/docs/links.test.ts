import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirSync } from '../helpers/temp-dir.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The text of a markdown file outside fenced code blocks, one entry per line (code lines blank). */
function proseLines(text: string): string[] {
  let fence: string | undefined;
  return text.split('\n').map((line) => {
    const opener = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && opener !== undefined) {
      fence = opener;
      return '';
    }
    if (fence !== undefined) {
      if (line.trim().startsWith(fence[0]!.repeat(fence.length)) && line.trim().replace(/[`~]/g, '') === '') fence = undefined;
      return '';
    }
    return line;
  });
}

/** The anchors GitHub gives a page's headings (github-slugger: lower case, punctuation dropped, spaces to hyphens, repeats numbered) and its explicit ids. */
export function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(text)) {
    for (const id of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(id[1]!);
    const heading = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const rendered = heading
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image shows its text
      .replace(/<[^>]+>/g, '')
      .replace(/[`*]/g, '');
    const base = rendered.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Every relative link of the markdown files that names a missing file or a heading its page lacks. */
export function brokenLinks(files: string[], root: string): string[] {
  const broken: string[] = [];
  for (const file of files) {
    const lines = proseLines(readFileSync(file, 'utf8'));
    lines.forEach((line, index) => {
      // Code spans are not links: `[a](b)` inside backticks is text.
      const prose = line.replace(/(`+)(?:(?!\1).)+?\1/g, (span) => ' '.repeat(span.length));
      for (const match of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const target = match[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        const [path = '', anchor] = target.split('#', 2);
        const where = `${relative(root, file)}:${index + 1}: ${target}`;
        const resolved = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
        if (!existsSync(resolved)) {
          broken.push(`${where} (no such file)`);
          continue;
        }
        if (anchor === undefined || !resolved.endsWith('.md') || statSync(resolved).isDirectory()) continue;
        if (!anchorsOf(readFileSync(resolved, 'utf8')).has(decodeURIComponent(anchor))) broken.push(`${where} (no such heading)`);
      }
    });
  }
  return broken;
}

function operatorDocs(): string[] {
  const docs = join(ROOT, 'docs');
  return [join(ROOT, 'README.md'), ...readdirSync(docs).filter((name) => name.endsWith('.md')).map((name) => join(docs, name))];
}

describe('links between the docs', () => {
  it('resolve every relative link of README.md and docs/*.md to a file, and every #anchor to a heading', () => {
    assert.deepEqual(brokenLinks(operatorDocs(), ROOT), []);
  });

  it('reports a missing file, a missing heading and a missing heading of another page, and not a link in code', () => {
    const dir = tempDirSync('doc-links');
    writeFileSync(join(dir, 'other.md'), '# Other page\n\n## `ca-a2a policy check [FILE|DIR…]`\n\n## Twice\n\n## Twice\n');
    writeFileSync(join(dir, 'page.md'), [
      '# Page',
      '[ok](other.md#other-page) [ok](other.md#ca-a2a-policy-check-filedir) [ok](other.md#twice-1) [ok](#page)',
      '[gone](missing.md) [no heading](other.md#nothing-here) [no heading here](#nowhere)',
      '`[in code](missing-in-span.md)`',
      '```',
      '[in a fence](missing-in-fence.md)',
      '```',
    ].join('\n'));
    assert.deepEqual(brokenLinks([join(dir, 'page.md')], dir), [
      'page.md:3: missing.md (no such file)',
      'page.md:3: other.md#nothing-here (no such heading)',
      'page.md:3: #nowhere (no such heading)',
    ]);
  });
});
