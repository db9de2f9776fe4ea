/* wagtail-llm-actions: selection tools in the rich-text editor (Draftail), issue 24 §2.
 *
 * A Draftail control ("llm-selection", registered with window.draftail.registerPlugin; plain
 * JS, no build step) adds a toolbar button. On a selection within one block it opens a small
 * panel under the editor: the tools the page offers (GET tools URL), then the queued run
 * (POST run URL, then the editor's status URL is polled), then a preview with Accept /
 * Discard. Accept replaces the selection with EditorState.push, so Draftail's Undo (Ctrl+Z)
 * restores it. While the model writes, the answer so far (text only) shows above Cancel.
 *
 * The selection is sent as HTML: links as <a linktype="page" id="…"> or <a href="…">, bold
 * <b>, italic <i>, other styles <span data-style="…">, line breaks <br/>. The server protects
 * every tag as a placeholder and sends back the same tags, so each comes back to the same
 * link entity and styles. All the words shown come from the page (#llm-selection-config).
 */
(() => {
  'use strict';

  const TYPE = 'llm-selection';
  const POLL_MS = 700;
  const TAG_FOR_STYLE = { BOLD: 'b', ITALIC: 'i' };

  const config = () => {
    const element = document.getElementById('llm-selection-config');
    return element ? element.dataset : null;
  };

  const pageId = () => {
    const match = window.location.pathname.match(/\/pages\/(\d+)\/edit\/?$/);
    return match ? match[1] : null;
  };

  const forPage = (template, id) => template.replace('/selection/0/', `/selection/${id}/`);

  const csrfToken = () => {
    const input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  };

  const escapeText = (text) =>
    text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const escapeAttr = (text) => escapeText(text).replace(/"/g, '&quot;');

  const decode = (html) => {
    const area = document.createElement('textarea');
    area.innerHTML = html;
    return area.value;
  };

  // -- the selection as HTML ----------------------------------------------------------------

  function linkTag(content, key) {
    const entity = content.getEntity(key);
    const data = entity.getData() || {};
    const type = entity.getType();
    if (type === 'LINK' && data.id) {
      return `<a linktype="page" id="${escapeAttr(String(data.id))}">`;
    }
    if (type === 'LINK') return `<a href="${escapeAttr(String(data.url || ''))}">`;
    if (type === 'DOCUMENT' && data.id) {
      return `<a linktype="document" id="${escapeAttr(String(data.id))}">`;
    }
    return `<a data-entity="${escapeAttr(type)}">`;
  }

  const openStyle = (s) =>
    TAG_FOR_STYLE[s] ? `<${TAG_FOR_STYLE[s]}>` : `<span data-style="${escapeAttr(s)}">`;
  const closeStyle = (s) => (TAG_FOR_STYLE[s] ? `</${TAG_FOR_STYLE[s]}>` : '</span>');

  /** The selection of `editorState` as {html, text, links, blockKey, start, end}, or {error}. */
  function readSelection(editorState) {
    const selection = editorState.getSelection();
    if (selection.getAnchorKey() !== selection.getFocusKey()) return { error: 'multiBlock' };
    const start = selection.getStartOffset();
    const end = selection.getEndOffset();
    if (start === end) return { error: 'empty' };
    const content = editorState.getCurrentContent();
    const block = content.getBlockForKey(selection.getStartKey());
    const text = block.getText();
    const links = {};
    const runs = [];
    for (let offset = start; offset < end; offset += 1) {
      const entity = block.getEntityAt(offset);
      const styles = block.getInlineStyleAt(offset).toArray().sort();
      const last = runs[runs.length - 1];
      const styleKey = styles.join(' ');
      if (last && last.entity === entity && last.styleKey === styleKey) {
        last.text += text[offset];
      } else {
        runs.push({ entity, styles, styleKey, text: text[offset] });
      }
    }
    let html = '';
    let openEntity = null;
    for (const run of runs) {
      if (run.entity !== openEntity) {
        if (openEntity) html += '</a>';
        openEntity = run.entity;
        if (openEntity) {
          const tag = linkTag(content, openEntity);
          links[tag] = openEntity;
          html += tag;
        }
      }
      const body = run.text.split('\n').map(escapeText).join('<br/>');
      html += run.styles.map(openStyle).join('') + body;
      html += run.styles.slice().reverse().map(closeStyle).join('');
    }
    if (openEntity) html += '</a>';
    return { html, text: text.slice(start, end), links, blockKey: block.getKey(), start, end };
  }

  /** The answer's HTML as pieces {text, styles, entity}; null if it holds an unknown tag. */
  function parseAnswer(html, links) {
    const pieces = [];
    const styles = [];
    let entity = null;
    for (const token of html.match(/<[^>]*>|[^<]+/g) || []) {
      if (!token.startsWith('<')) {
        pieces.push({ text: decode(token), styles: styles.slice(), entity });
      } else if (/^<br\s*\/?>$/i.test(token)) {
        pieces.push({ text: '\n', styles: styles.slice(), entity });
      } else if (token === '</a>') {
        entity = null;
      } else if (token.startsWith('<a')) {
        if (!(token in links)) return null;
        entity = links[token];
      } else if (token === '<b>') {
        styles.push('BOLD');
      } else if (token === '<i>') {
        styles.push('ITALIC');
      } else if (token.startsWith('<span')) {
        const match = token.match(/data-style="([^"]*)"/);
        styles.push(match ? decode(match[1]) : '');
      } else if (/^<\/(b|i|span)>$/.test(token)) {
        styles.pop();
      } else {
        return null;
      }
    }
    return pieces;
  }

  /** `editorState` with the selection replaced by `pieces` (one undo step), text selected. */
  function replaced(editorState, sent, pieces) {
    const { EditorState, Modifier, SelectionState } = window.DraftJS;
    let content = editorState.getCurrentContent();
    const range = SelectionState.createEmpty(sent.blockKey).merge({
      anchorOffset: sent.start,
      focusOffset: sent.end,
    });
    content = Modifier.removeRange(content, range, 'forward');
    let at = content.getSelectionAfter();
    const none = editorState.getCurrentInlineStyle().clear();
    for (const piece of pieces) {
      const styles = piece.styles.reduce((set, s) => set.add(s), none);
      content = Modifier.insertText(content, at, piece.text, styles, piece.entity || null);
      at = content.getSelectionAfter();
    }
    const selected = range.merge({ focusOffset: at.getFocusOffset() });
    const pushed = EditorState.push(editorState, content, 'insert-fragment');
    return EditorState.forceSelection(pushed, selected);
  }

  const unchanged = (editorState, sent) => {
    const block = editorState.getCurrentContent().getBlockForKey(sent.blockKey);
    return Boolean(block) && block.getText().slice(sent.start, sent.end) === sent.text;
  };

  // -- the panel under the editor ------------------------------------------------------------

  class Panel {
    constructor(anchor, editor, words) {
      this.editor = editor; // {getEditorState, onChange}
      this.words = words;
      this.element = document.createElement('div');
      this.element.className = 'llm-selection';
      this.element.setAttribute('role', 'region');
      this.element.setAttribute('aria-label', words.button);
      this.element.setAttribute('aria-live', 'polite');
      anchor.after(this.element);
      this.timer = null;
    }

    close() {
      window.clearTimeout(this.timer);
      this.timer = null;
      this.element.remove();
      if (Panel.current === this) Panel.current = null;
    }

    button(label, onClick, primary = false) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = primary ? 'button button-small' : 'button button-small button-secondary';
      button.textContent = label;
      button.addEventListener('mousedown', (event) => event.preventDefault());
      button.addEventListener('click', onClick);
      return button;
    }

    show(message, ...buttons) {
      this.element.replaceChildren();
      if (message) {
        const text = document.createElement('p');
        text.className = 'llm-selection__message';
        text.textContent = message;
        this.element.append(text);
      }
      const row = document.createElement('div');
      row.className = 'llm-selection__buttons';
      row.append(...buttons);
      this.element.append(row);
      return row;
    }

    fail(message) {
      this.show(message, this.button(this.words.close, () => this.close()));
    }

    async open(sent) {
      this.sent = sent;
      this.show(this.words.loading);
      const id = pageId();
      if (!id) return this.fail(this.words.unsavedPage);
      this.id = id;
      const data = await this.request(forPage(this.words.toolsUrl, id));
      if (!data) return undefined;
      if (!data.tools.length) return this.fail(data.message);
      const buttons = data.tools.map((tool) => this.button(tool.label, () => this.run(tool)));
      const row = this.show('', ...buttons, this.button(this.words.close, () => this.close()));
      row.classList.add('llm-selection__menu');
      return buttons[0].focus();
    }

    async request(url, options = {}) {
      let response;
      try {
        response = await fetch(url, {
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
          ...options,
        });
        const data = await response.json();
        if (!response.ok) {
          this.fail(data.message || this.words.failed);
          return null;
        }
        return data;
      } catch (error) {
        this.fail(this.words.failed);
        return null;
      }
    }

    async run(tool) {
      const body = new FormData();
      body.append('tool', tool.key);
      body.append('html', this.sent.html);
      this.show(this.words.working);
      const url = forPage(this.words.runUrl, this.id);
      const job = await this.request(url, { method: 'POST', body });
      if (!job) return;
      this.job = job;
      this.show(this.words.working, this.button(this.words.cancel, () => this.cancel()));
      this.poll();
    }

    async cancel() {
      window.clearTimeout(this.timer);
      this.timer = null;
      if (this.job) {
        await fetch(this.job.cancel_url, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken() },
        }).catch(() => null);
      }
      this.close();
    }

    async poll() {
      const status = await this.request(this.job.status_url);
      if (!status || Panel.current !== this) return;
      if (status.state === 'succeeded') {
        this.preview(status.result);
      } else if (status.state === 'failed' || status.state === 'cancelled') {
        this.fail(status.message || this.words.failed);
      } else {
        const message = status.state === 'stalled' ? status.message : this.words.working;
        this.show(message, this.button(this.words.cancel, () => this.cancel()));
        if (typeof status.partial === 'string' && status.partial) {
          // The answer as it is written (text only; checked and shown whole when done).
          const box = document.createElement('div');
          box.className = 'llm-selection__preview llm-selection__partial';
          box.setAttribute('aria-live', 'polite');
          box.textContent = status.partial;
          this.element.insertBefore(box, this.element.querySelector('.llm-selection__buttons'));
        }
        this.timer = window.setTimeout(() => this.poll(), POLL_MS);
      }
    }

    preview(result) {
      const pieces = parseAnswer(result.selection || '', this.sent.links);
      if (!pieces) return this.fail(this.words.failed);
      this.show('');
      const heading = document.createElement('p');
      heading.className = 'llm-selection__heading';
      heading.textContent = this.words.preview;
      const box = document.createElement('div');
      box.className = 'llm-selection__preview';
      for (const piece of pieces) box.append(previewNode(piece));
      const row = this.element.querySelector('.llm-selection__buttons');
      this.element.insertBefore(box, row);
      this.element.insertBefore(heading, box);
      row.append(
        this.button(this.words.accept, () => this.accept(pieces), true),
        this.button(this.words.discard, () => this.discard(result)),
      );
      return row.firstChild.focus();
    }

    accept(pieces) {
      const state = this.editor.getEditorState();
      if (!unchanged(state, this.sent)) return this.fail(this.words.changed);
      this.editor.onChange(replaced(state, this.sent, pieces));
      return this.close();
    }

    discard(result) {
      if (result.outcome_url) {
        const body = new FormData();
        body.append('outcome', 'discarded');
        fetch(result.outcome_url, {
          method: 'POST',
          body,
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken() },
        }).catch(() => null);
      }
      this.close();
    }
  }
  Panel.current = null;

  function previewNode(piece) {
    let node =
      piece.text === '\n' ? document.createElement('br') : document.createTextNode(piece.text);
    for (const style of piece.styles) {
      const tag = style === 'BOLD' ? 'strong' : style === 'ITALIC' ? 'em' : 'span';
      const wrapper = document.createElement(tag);
      wrapper.append(node);
      node = wrapper;
    }
    if (piece.entity) {
      const link = document.createElement('span');
      link.className = 'llm-selection__link';
      link.append(node);
      node = link;
    }
    return node;
  }

  // -- the Draftail control --------------------------------------------------------------------

  function SelectionControl({ getEditorState, onChange }) {
    const words = config();
    if (!words) return null;
    const onClick = (event) => {
      const editorElement = event.currentTarget.closest('.Draftail-Editor');
      if (!editorElement) return;
      if (Panel.current) Panel.current.close();
      const anchor = editorElement.parentElement || editorElement;
      const panel = new Panel(anchor, { getEditorState, onChange }, words);
      Panel.current = panel;
      const sent = readSelection(getEditorState());
      if (sent.error) {
        panel.fail(words[sent.error]);
        return;
      }
      panel.open(sent);
    };
    return window.React.createElement(
      'button',
      {
        type: 'button',
        className: 'Draftail-ToolbarButton llm-selection__toggle',
        'aria-label': words.button,
        title: words.button,
        'data-llm-selection': '',
        onMouseDown: (event) => event.preventDefault(),
        onClick,
      },
      window.React.createElement(
        'span',
        { className: 'Draftail-ToolbarButton__label' },
        words.buttonShort,
      ),
    );
  }

  if (window.draftail && window.draftail.registerPlugin) {
    window.draftail.registerPlugin({ type: TYPE, inline: SelectionControl }, 'controls');
  }
})();
