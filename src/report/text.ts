/**
 * The suspect controls much of what a report shows (process names, command lines, file names):
 * every such string goes through these before it reaches HTML or Markdown.
 */

/**
 * Control characters and the Unicode bidirectional overrides shown as escapes: a file name
 * `invoice\u202Egpj.exe` must not display as `invoiceexe.jpg`, and a newline must not start a
 * Markdown line of its own.
 */
export function visible(s: string): string {
  return s.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text for an HTML element's content or a quoted attribute value. */
export function html(value: unknown): string {
  return visible(String(value)).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/**
 * Text for a Markdown paragraph or table cell: every ASCII punctuation character that Markdown
 * (CommonMark, GitHub's tables and raw HTML) gives a meaning is backslash-escaped, so `<script>`
 * stays text, `|` stays in its cell and `[x](y)` is no link.
 */
export function md(value: unknown): string {
  return visible(String(value)).replace(/[\\`*_{}[\]()#+\-.!|<>~&"'=:$]/g, (c) => `\\${c}`);
}
