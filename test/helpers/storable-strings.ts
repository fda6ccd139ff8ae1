import fc from 'fast-check';
import type pg from 'pg';

/**
 * Strings of any code point, with the pieces PostgreSQL cannot hold as sent mixed in often enough
 * to matter: U+0000, lone high and low surrogates (also one before or after a real pair) and
 * emoji, whose two halves a cut can split.
 */
export const anyText = (maxLength = 40): fc.Arbitrary<string> => fc.string({
  unit: fc.oneof(
    { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 6 },
    { arbitrary: fc.constantFrom('a', ' ', '\\', '"', 'é', '\u0001', '\uFFFD', '\uFFFF', '\u{10FFFF}'), weight: 2 },
    { arbitrary: fc.constantFrom('😀', '\ud83d\ude00'), weight: 2 },
    { arbitrary: fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff', '\\u0000', '\\ud800'), weight: 1 },
  ),
  maxLength,
});

/** What PostgreSQL did with one value: stored it (and what it reads back), or refused it (SQLSTATE). */
export type Stored = { ok: true; value: unknown } | { ok: false; code: string };

// Class 22 (data exception): 22021 a NUL byte in text, 22P05 the \u0000 escape in jsonb, 22P02
// a lone surrogate escape in jsonb. Anything else (connection, syntax) is a broken test.
const isDataError = (err: unknown): err is { code: string } =>
  typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('22');

/**
 * Inserts each value into `table` (columns n integer, t text, j jsonb) as `column`, casting the
 * text for jsonb, and returns what each row holds. One statement for the batch; when PostgreSQL
 * refuses it, the batch is halved until the refused values stand alone.
 */
export async function storeEach(client: pg.Client, table: string, column: 't' | 'j', values: readonly string[]): Promise<Stored[]> {
  if (values.length === 0) return [];
  try {
    const { rows } = await client.query<{ n: string; v: unknown }>(
      `INSERT INTO ${table} (n, ${column}) SELECT n, v${column === 'j' ? '::jsonb' : ''} FROM unnest($1::text[]) WITH ORDINALITY AS u(v, n)
       RETURNING n, ${column} AS v`,
      [values],
    );
    const byN = new Map(rows.map((r) => [Number(r.n), r.v]));
    return values.map((_, i) => ({ ok: true, value: byN.get(i + 1) }));
  } catch (err) {
    if (!isDataError(err)) throw err;
    if (values.length === 1) return [{ ok: false, code: err.code }];
    const half = Math.ceil(values.length / 2);
    return [...(await storeEach(client, table, column, values.slice(0, half))), ...(await storeEach(client, table, column, values.slice(half)))];
  }
}

/** A table of its own for {@link storeEach} in the schema the client's search_path names. */
export async function createStoreTable(client: pg.Client, table: string): Promise<void> {
  await client.query(`CREATE TABLE ${table} (id bigserial PRIMARY KEY, n integer NOT NULL, t text, j jsonb)`);
}
