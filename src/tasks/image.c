/* image: the seeds' headline job, resizing an upload to several widths,
 * on libvips (what sharp is built on).
 *
 * The pipeline decodes once: the header is checked first (its pixel count
 * against --max-image-pixels, before any pixel is decoded), the largest
 * width is made with shrink-on-load and auto-rotation (vips_thumbnail_buffer),
 * kept in memory, and every smaller width is derived from it, largest
 * first, each from the one before it (fit inside: the aspect holds). Then per width: fit (inside, cover, contain),
 * grayscale, blur, sharpen, a watermark bottom-right, and a save without metadata to w<width>.<ext>.
 *
 * Hostile input is normal input: only the loaders for JPEG, PNG, WebP,
 * GIF, TIFF and HEIF/AVIF are reachable (the untrusted ones are blocked at
 * start), decoding fails on the first error (a truncated JPEG is an error,
 * not a warning), and a failure is the job's (`invalid_image` with the
 * library's reason), never the worker's. The task always runs in a worker
 * process: libvips is initialised there (never in the server), with its
 * operation cache off and its thread pool sized so that the workers
 * together do not oversubscribe the cores. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "tasks/tasks.h"

#define MAX_WIDTHS 8
#define DEFAULT_MAX_PIXELS INT64_C(40000000)

static const char *const fits[] = {"inside", "cover", "contain", NULL};
static const char *const formats[] = {"webp", "jpeg", "png", "avif", NULL};
static const char *const image_types[] = {"image/jpeg", "image/png",  "image/webp", "image/gif",
                                          "image/tiff", "image/heif", "image/avif", NULL};
/* The loaders uploads may reach (vips_foreign_find_load_buffer names). */
static const char *const loaders[] = {
    "VipsForeignLoadJpegBuffer",  "VipsForeignLoadPngBuffer",     "VipsForeignLoadWebpBuffer",
    "VipsForeignLoadGifBuffer",   "VipsForeignLoadTiffBuffer",    "VipsForeignLoadHeifBuffer",
    "VipsForeignLoadNsgifBuffer", "VipsForeignLoadPngLoadBuffer", NULL};

static bool vips_ready;

/* Once per worker process (or thread-pool server): libvips, its cache off,
 * the untrusted loaders blocked, its threads sized to the cores left. */
static bool init_vips(void) {
  if (vips_ready)
    return true;
  if (VIPS_INIT("offload") != 0)
    return false;
  vips_cache_set_max(0);
  vips_cache_set_max_mem(0);
  vips_block_untrusted_set(TRUE);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const char *w = getenv("OFFLOAD_IMAGE_WORKERS"); /* set by the server: its process workers */
  long workers = w ? strtol(w, NULL, 10) : 1;
  long per = workers > 0 && cores > workers ? cores / workers : 1;
  vips_concurrency_set((int)(per > 0 ? per : 1));
  vips_ready = true;
  return true;
}

static int64_t max_pixels(void) {
  const char *v = getenv("OFFLOAD_MAX_IMAGE_PIXELS"); /* --max-image-pixels, set by the server */
  long long n = v ? strtoll(v, NULL, 10) : 0;
  return n > 0 ? (int64_t)n : DEFAULT_MAX_PIXELS;
}

static bool loader_allowed(const char *name) {
  for (size_t i = 0; name && loaders[i]; i++)
    if (strcmp(name, loaders[i]) == 0)
      return true;
  return false;
}

/* Fails the job with libvips' last error, cleaned to one line. */
static void fail_vips(offload_task_t *t, const char *code, const char *what) {
  char msg[400];
  snprintf(msg, sizeof msg, "%s", vips_error_buffer());
  vips_error_clear();
  for (char *c = msg; *c; c++)
    if (*c == '\n')
      *c = *(c + 1) ? ' ' : '\0';
  offload_task_fail(t, code, "%s: %s", what, msg[0] ? msg : "libvips gave no reason");
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x < y) - (x > y);
}

/* Converts to `space`; a one- or two-band image is read as grey (libvips
 * may call it "multiband" after a resize). */
static int to_space(VipsImage *in, VipsImage **out, VipsInterpretation space) {
  VipsInterpretation from = in->Bands < 3 ? VIPS_INTERPRETATION_B_W : vips_image_guess_interpretation(in);
  return vips_colourspace(in, out, space, "source_space", from, NULL);
}

/* The watermark: `text`, white at half opacity, bottom-right of `in`. */
static int watermark(VipsImage *in, const char *text, VipsImage **out) {
  VipsImage *base = NULL, *mask = NULL, *alpha = NULL, *white = NULL, *overlay = NULL;
  int rc = -1;
  int w = in->Xsize, h = in->Ysize;
  int fontsize = h / 20 > 10 ? h / 20 : 10;
  char font[64];
  snprintf(font, sizeof font, "DejaVu Sans Bold %d", fontsize);
  if (to_space(in, &base, VIPS_INTERPRETATION_sRGB) ||
      vips_text(&mask, text, "font", font, "width", w - w / 10 > 1 ? w - w / 10 : 1, NULL))
    goto out;
  if (!vips_image_hasalpha(base)) {
    VipsImage *a;
    if (vips_addalpha(base, &a, NULL))
      goto out;
    g_object_unref(base);
    base = a;
  }
  /* Half the text's coverage is the overlay's alpha; its colour is white. */
  double half = 0.5, zero = 0;
  if (vips_linear(mask, &alpha, &half, &zero, 1, "uchar", TRUE, NULL) ||
      !(white = vips_image_new_from_image1(mask, 255.0)))
    goto out;
  VipsImage *bands[4] = {white, white, white, alpha}, *joined = NULL;
  if (vips_bandjoin(bands, &joined, 4, NULL))
    goto out;
  /* Say what the four bands are, or composite cannot bring it to sRGB. */
  int bad = vips_copy(joined, &overlay, "interpretation", VIPS_INTERPRETATION_sRGB, NULL);
  g_object_unref(joined);
  if (bad)
    goto out;
  int x = w - overlay->Xsize - w / 40, y = h - overlay->Ysize - h / 40;
  rc = vips_composite2(base, overlay, out, VIPS_BLEND_MODE_OVER, "x", x > 0 ? x : 0, "y", y > 0 ? y : 0, NULL);
out:
  VIPS_UNREF(base);
  VIPS_UNREF(mask);
  VIPS_UNREF(alpha);
  VIPS_UNREF(white);
  VIPS_UNREF(overlay);
  return rc;
}

/* One output width from `src`, saved. With `keep`, *keep gets the resized
 * image (before any filter) in memory: the source of the next, smaller
 * width. */
static int one_width(offload_task_t *t, VipsImage *src, int64_t width, const char *format, int quality,
                     VipsImage **keep) {
  int64_t height = offload_task_param_int(t, "height", 0);
  const char *fit = offload_task_param_str(t, "fit", "inside");
  VipsImage *img = NULL, *next = NULL;
  int rc = -1;
  const char *step = "Resizing";
  bool cover = strcmp(fit, "cover") == 0 && height > 0, contain = strcmp(fit, "contain") == 0 && height > 0;
  if (vips_thumbnail_image(src, &img, (int)width, "height", height > 0 ? (int)height : VIPS_MAX_COORD, "crop",
                           cover ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE, "no_rotate", TRUE, NULL))
    goto fail;
  if (keep) {
    if (!(next = vips_image_copy_memory(img)))
      goto fail;
    g_object_unref(img);
    img = next;
    g_object_ref(img);
    *keep = img;
  }
  step = "Letterboxing";
  if (contain) { /* letterbox to exactly width x height */
    if (vips_gravity(img, &next, VIPS_COMPASS_DIRECTION_CENTRE, (int)width, (int)height, "extend", VIPS_EXTEND_BLACK,
                     NULL))
      goto fail;
    g_object_unref(img);
    img = next;
  }
  step = "Grayscale";
  if (offload_task_param_bool(t, "grayscale", false)) {
    if (to_space(img, &next, VIPS_INTERPRETATION_B_W))
      goto fail;
    g_object_unref(img);
    img = next;
  }
  double sigma = offload_task_param_real(t, "blur", 0);
  step = "Blurring";
  if (sigma > 0) {
    if (vips_gaussblur(img, &next, sigma, NULL))
      goto fail;
    g_object_unref(img);
    img = next;
  }
  step = "Sharpening";
  if (offload_task_param_bool(t, "sharpen", false)) {
    if (vips_sharpen(img, &next, NULL))
      goto fail;
    g_object_unref(img);
    img = next;
  }
  const char *mark = offload_task_param_str(t, "watermark", NULL);
  step = "The watermark";
  if (mark && mark[0]) {
    if (watermark(img, mark, &next))
      goto fail;
    g_object_unref(img);
    img = next;
  }
  void *buf = NULL;
  size_t len = 0;
  const char *ext, *type;
  int save;
  if (strcmp(format, "jpeg") == 0) {
    ext = "jpg", type = "image/jpeg";
    save = vips_jpegsave_buffer(img, &buf, &len, "Q", quality, "strip", TRUE, NULL);
  } else if (strcmp(format, "png") == 0) {
    ext = "png", type = "image/png";
    save = vips_pngsave_buffer(img, &buf, &len, "strip", TRUE, NULL);
  } else if (strcmp(format, "avif") == 0) {
    ext = "avif", type = "image/avif";
    save = vips_heifsave_buffer(img, &buf, &len, "Q", quality, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
                                "strip", TRUE, NULL);
  } else {
    ext = "webp", type = "image/webp";
    save = vips_webpsave_buffer(img, &buf, &len, "Q", quality, "strip", TRUE, NULL);
  }
  if (save) {
    fail_vips(t, strcmp(format, "avif") == 0 ? "unsupported_format" : "internal", "Saving failed");
    g_object_unref(img);
    return -1;
  }
  char name[32];
  snprintf(name, sizeof name, "w%lld.%s", (long long)width, ext);
  rc = offload_task_file_write(t, name, type, buf, len);
  g_free(buf);
  g_object_unref(img);
  if (rc != 0)
    offload_task_fail(t, "internal", "The output file %s could not be written: %s.", name, strerror(errno));
  return rc;
fail:
  VIPS_UNREF(img);
  fail_vips(t, "invalid_image", step);
  return -1;
}

static void image_run(offload_task_t *t) {
  size_t len;
  const void *in = offload_task_input(t, &len, NULL);
  if (!in || !len) {
    offload_task_fail(t, "invalid_image", "The upload is empty.");
    return;
  }
  if (!init_vips()) {
    fail_vips(t, "internal", "libvips could not start");
    return;
  }
  const char *loader = vips_foreign_find_load_buffer(in, len);
  if (!loader_allowed(loader)) {
    vips_error_clear();
    offload_task_fail(t, "invalid_image",
                      "The upload is not an image this server reads (JPEG, PNG, WebP, GIF, "
                      "TIFF, HEIF/AVIF)%s%s.",
                      loader ? ": it looks like " : "", loader ? loader : "");
    return;
  }
  /* The header alone: its size before any pixel is decoded. */
  VipsImage *head = vips_image_new_from_buffer(in, len, "", "fail_on", VIPS_FAIL_ON_ERROR, NULL);
  if (!head) {
    fail_vips(t, "invalid_image", "The image could not be read");
    return;
  }
  int64_t pixels = (int64_t)head->Xsize * head->Ysize, limit = max_pixels();
  g_object_unref(head);
  if (pixels > limit) {
    offload_task_fail(t, "image_too_large", "The image has %lld pixels; the most is %lld (--max-image-pixels).",
                      (long long)pixels, (long long)limit);
    return;
  }
  int64_t widths[MAX_WIDTHS];
  size_t n = offload_task_param_ints(t, "widths", widths, MAX_WIDTHS);
  n = n > MAX_WIDTHS ? MAX_WIDTHS : n;
  qsort(widths, n, sizeof *widths, cmp_desc);
  int64_t height = offload_task_param_int(t, "height", 0);
  const char *format = offload_task_param_str(t, "format", "webp");
  int quality = (int)offload_task_param_int(t, "quality", 80);
  /* Decode once, at the largest size any output needs (shrink-on-load). */
  VipsImage *big = NULL, *mem = NULL;
  if (vips_thumbnail_buffer((void *)in, len, &big, (int)widths[0], "height",
                            height > 0 ? (int)(height * 2 > VIPS_MAX_COORD ? VIPS_MAX_COORD : height * 2)
                                       : VIPS_MAX_COORD,
                            "option_string", "fail_on=error", NULL) || /* the loader's option: a truncated file fails */
      !(mem = vips_image_copy_memory(big))) {
    VIPS_UNREF(big);
    fail_vips(t, "invalid_image", "The image could not be decoded");
    return;
  }
  g_object_unref(big);
  offload_task_progress(t, 0.2);
  /* Largest first, each width resized from the one before (fewer pixels
   * to read than the largest), where that keeps the geometry: `inside`
   * keeps the aspect; cover and contain each make their own box. */
  bool cascade = strcmp(offload_task_param_str(t, "fit", "inside"), "inside") == 0;
  for (size_t i = 0; i < n; i++) {
    VipsImage *kept = NULL;
    if (offload_task_canceled(t) ||
        one_width(t, mem, widths[i], format, quality, cascade && i + 1 < n ? &kept : NULL) != 0) {
      VIPS_UNREF(kept);
      break;
    }
    if (kept) {
      g_object_unref(mem);
      mem = kept;
    }
    offload_task_progress(t, 0.2 + 0.8 * (double)(i + 1) / (double)n);
  }
  g_object_unref(mem);
  char out[256];
  snprintf(out, sizeof out, "{\"outputs\":%zu}", n);
  offload_task_result_json(t, out);
}

static const offload_param_spec_t image_params[] = {
    {.name = "widths",
     .type = OFFLOAD_PARAM_INT_LIST,
     .required = true,
     .min = 1,
     .max = 8192,
     .min_items = 1,
     .max_items = MAX_WIDTHS,
     .description = "one output per width, named w<width>.<ext>"},
    {.name = "height", .type = OFFLOAD_PARAM_INTEGER, .min = 1, .max = 8192, .description = "the box's height"},
    {.name = "fit",
     .type = OFFLOAD_PARAM_STRING,
     .choices = fits,
     .dflt = "\"inside\"",
     .description = "as in sharp: cover crops to fill the box, contain letterboxes to it, inside keeps within it"},
    {.name = "format", .type = OFFLOAD_PARAM_STRING, .choices = formats, .dflt = "\"webp\""},
    {.name = "quality", .type = OFFLOAD_PARAM_INTEGER, .min = 1, .max = 100, .dflt = "80"},
    {.name = "watermark",
     .type = OFFLOAD_PARAM_STRING,
     .max_len = 200,
     .description = "text drawn bottom-right, half transparent"},
    {.name = "grayscale", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "false"},
    {.name = "blur", .type = OFFLOAD_PARAM_NUMBER, .min_real = 0.3, .max_real = 100, .description = "Gaussian sigma"},
    {.name = "sharpen", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "false"},
};

const offload_task_def_t task_image = {
    .name = "image",
    .description = "Resizes an uploaded image to up to 8 widths (libvips): fit, format, quality, watermark, filters.",
    .run = image_run,
    .params = image_params,
    .nparams = sizeof image_params / sizeof image_params[0],
    .isolation = OFFLOAD_ISOLATION_PROCESS,
    .files = true,
    .input = OFFLOAD_INPUT_REQUIRED,
    .input_types = image_types,
};

void task_image_fini(void) {
  if (vips_ready)
    vips_shutdown();
  vips_ready = false;
}
