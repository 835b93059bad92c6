/* pdf: the seeds' PDF generation. {"title","content","author"?} becomes
 * document.pdf: A4, the title (and author) on top of the first page, the
 * content's paragraphs (separated by blank lines; single line breaks
 * inside a paragraph are spaces) wrapped to the text width over as many
 * pages as needed, and each page's number at its foot. Text is laid out by
 * pango (real fonts through fontconfig, fallback for any script) and drawn
 * by cairo's PDF surface, which writes straight into the output file.
 *
 * Progress is the share of the content laid out; cancel and the timeout
 * are checked at every line. The result is {"pages": N}. */
#include <cairo-pdf.h>
#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <pango/pangocairo.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tasks/tasks.h"

#define A4_W 595.2756 /* points: 210 mm */
#define A4_H 841.8898 /* 297 mm */
#define MARGIN 72.0   /* one inch */
#define FOOTER 36.0   /* the page number's baseline, above the bottom edge */
#define PARA_GAP 8.0  /* between paragraphs */
#define CONTENT_MAX (512 * 1024)

static cairo_status_t write_fd(void *closure, const unsigned char *data, unsigned int len) {
  int fd = *(int *)closure;
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return CAIRO_STATUS_WRITE_ERROR;
    }
    data += w;
    len -= (unsigned)w;
  }
  return CAIRO_STATUS_SUCCESS;
}

typedef struct page_state {
  cairo_t *cr;
  PangoLayout *footer;
  int page;
  double y; /* the next line's top */
} page_state_t;

static void draw_footer(page_state_t *ps) {
  char num[32];
  snprintf(num, sizeof num, "%d", ps->page);
  pango_layout_set_text(ps->footer, num, -1);
  int w, h;
  pango_layout_get_pixel_size(ps->footer, &w, &h);
  cairo_move_to(ps->cr, (A4_W - w) / 2.0, A4_H - FOOTER - h);
  pango_cairo_show_layout(ps->cr, ps->footer);
}

static void next_page(page_state_t *ps) {
  draw_footer(ps);
  cairo_show_page(ps->cr);
  ps->page++;
  ps->y = MARGIN;
}

/* Draws a layout's lines from ps->y on, breaking pages between lines.
 * False when the job was canceled meanwhile. */
static bool flow(offload_task_t *t, page_state_t *ps, PangoLayout *layout) {
  PangoLayoutIter *it = pango_layout_get_iter(layout);
  bool ok = true;
  do {
    PangoRectangle logical;
    pango_layout_iter_get_line_extents(it, NULL, &logical);
    double h = (double)logical.height / PANGO_SCALE;
    if (ps->y + h > A4_H - MARGIN)
      next_page(ps);
    int baseline = pango_layout_iter_get_baseline(it) - logical.y;
    cairo_move_to(ps->cr, MARGIN, ps->y + (double)baseline / PANGO_SCALE);
    pango_cairo_show_layout_line(ps->cr, pango_layout_iter_get_line_readonly(it));
    ps->y += h;
    if (offload_task_canceled(t)) {
      ok = false;
      break;
    }
  } while (pango_layout_iter_next_line(it));
  pango_layout_iter_free(it);
  return ok;
}

static PangoLayout *new_layout(cairo_t *cr, const char *font) {
  PangoLayout *l = pango_cairo_create_layout(cr);
  PangoFontDescription *fd = pango_font_description_from_string(font);
  pango_layout_set_font_description(l, fd);
  pango_font_description_free(fd);
  pango_layout_set_width(l, (int)((A4_W - 2 * MARGIN) * PANGO_SCALE));
  pango_layout_set_wrap(l, PANGO_WRAP_WORD_CHAR);
  return l;
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
      return false;
  return true;
}

/* The next paragraph of `s` from *pos: its lines joined by spaces
 * (malloc'd), or NULL at the end (or out of memory). Blank lines separate
 * paragraphs. */
static char *next_paragraph(const char *s, size_t len, size_t *pos) {
  size_t i = *pos, e;
  for (;; i = e + 1) { /* skip blank lines */
    for (e = i; e < len && s[e] != '\n'; e++)
      ;
    if (!blank(s + i, e - i))
      break;
    if (e >= len) {
      *pos = len;
      return NULL;
    }
  }
  size_t start = i, end = i;
  while (i < len) {
    for (e = i; e < len && s[e] != '\n'; e++)
      ;
    if (blank(s + i, e - i))
      break;
    end = e;
    i = e < len ? e + 1 : len;
  }
  char *p = malloc(end - start + 1);
  if (!p)
    return NULL;
  for (size_t k = start; k < end; k++)
    p[k - start] = s[k] == '\n' || s[k] == '\r' ? ' ' : s[k];
  p[end - start] = '\0';
  *pos = i;
  return p;
}

static void pdf_run(offload_task_t *t) {
  const char *title = offload_task_param_str(t, "title", "");
  const char *author = offload_task_param_str(t, "author", NULL);
  size_t len;
  const char *content = offload_task_param_strn(t, "content", &len);
  int fd = offload_task_file_open(t, "document.pdf", "application/pdf");
  if (fd < 0) {
    offload_task_fail(t, "internal", "The output file could not be created: %s.", strerror(errno));
    return;
  }
  cairo_surface_t *surface = cairo_pdf_surface_create_for_stream(write_fd, &fd, A4_W, A4_H);
  cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_TITLE, title);
  if (author)
    cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_AUTHOR, author);
  cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_CREATOR, "offload");
  cairo_t *cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 0, 0, 0);
  page_state_t ps = {.cr = cr, .footer = new_layout(cr, "DejaVu Sans 9"), .page = 1, .y = MARGIN};
  PangoLayout *head = new_layout(cr, "DejaVu Sans Bold 20");
  PangoLayout *body = new_layout(cr, "DejaVu Serif 11");
  pango_layout_set_text(head, title, -1);
  bool ok = flow(t, &ps, head);
  if (ok && author && author[0]) {
    PangoLayout *by = new_layout(cr, "DejaVu Sans Italic 11");
    pango_layout_set_text(by, author, -1);
    ps.y += PARA_GAP / 2;
    ok = flow(t, &ps, by);
    g_object_unref(by);
  }
  ps.y += 2 * PARA_GAP;
  size_t pos = 0;
  char *para;
  while (ok && (para = next_paragraph(content, len, &pos)) != NULL) {
    pango_layout_set_text(body, para, -1);
    free(para);
    ok = flow(t, &ps, body);
    ps.y += PARA_GAP;
    offload_task_progress(t, 0.99 * (double)pos / (double)(len ? len : 1));
  }
  if (ok)
    draw_footer(&ps);
  g_object_unref(head);
  g_object_unref(body);
  g_object_unref(ps.footer);
  cairo_destroy(cr);
  cairo_surface_finish(surface); /* writes the rest of the file */
  cairo_status_t st = cairo_surface_status(surface);
  cairo_surface_destroy(surface);
  if (!ok)
    return; /* canceled: the job keeps no file */
  if (st != CAIRO_STATUS_SUCCESS) {
    offload_task_fail(t, "internal", "cairo could not write the PDF: %s.", cairo_status_to_string(st));
    return;
  }
  char out[64];
  snprintf(out, sizeof out, "{\"pages\":%d}", ps.page);
  offload_task_progress(t, 1.0);
  offload_task_result_json(t, out);
}

static const offload_param_spec_t pdf_params[] = {
    {.name = "title", .type = OFFLOAD_PARAM_STRING, .required = true, .max_len = 1024,
     .description = "the document's title, on top of the first page and in its metadata"},
    {.name = "content", .type = OFFLOAD_PARAM_STRING, .required = true, .max_len = CONTENT_MAX,
     .description = "the text: paragraphs separated by blank lines"},
    {.name = "author", .type = OFFLOAD_PARAM_STRING, .max_len = 1024,
     .description = "shown under the title and in the metadata"},
};

const offload_task_def_t task_pdf = {
    .name = "pdf",
    .description = "Typesets a title and paragraphs into an A4 PDF (document.pdf) with page numbers.",
    .run = pdf_run,
    .params = pdf_params,
    .nparams = sizeof pdf_params / sizeof pdf_params[0],
    .files = true,
};

void task_pdf_fini(void) {
  /* fontconfig's caches, kept for the process's life: freed so a leak
   * checker sees only real leaks. No thread may lay out text any more. */
  FcFini();
}
