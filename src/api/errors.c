/* api/errors: the one table that turns an error into a status and a code,
 * and the JSON replies. See api_int.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/err.h"
#include "util/utf8.h"

static const struct {
  int status;
  const char *code;
} errors[] = {
    [API_E_BAD_REQUEST] = {400, "bad_request"},
    [API_E_INVALID_PARAM] = {400, "invalid_param"},
    [API_E_MISSING_PARAM] = {400, "missing_param"},
    [API_E_UNKNOWN_PARAM] = {400, "unknown_param"},
    [API_E_INVALID_JSON] = {400, "invalid_json"},
    [API_E_INVALID_BODY] = {400, "invalid_body"},
    [API_E_UNKNOWN_TASK] = {400, "unknown_task"},
    [API_E_UNAUTHORIZED] = {401, "unauthorized"},
    [API_E_NOT_FOUND] = {404, "not_found"},
    [API_E_NO_LOG] = {404, "no_log"},
    [API_E_METHOD_NOT_ALLOWED] = {405, "method_not_allowed"},
    [API_E_ALREADY_FINISHED] = {409, "already_finished"},
    [API_E_PAYLOAD_TOO_LARGE] = {413, "payload_too_large"},
    [API_E_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported_media_type"},
    [API_E_HEADER_TOO_LARGE] = {431, "header_too_large"},
    [API_E_QUEUE_FULL] = {429, "queue_full"},
    [API_E_SHUTTING_DOWN] = {503, "shutting_down"},
    [API_E_STORE_UNAVAILABLE] = {503, "store_unavailable"},
    [API_E_TOO_MANY_STREAMS] = {503, "too_many_streams"},
    [API_E_IDEMPOTENCY_CONFLICT] = {409, "idempotency_conflict"},
    [API_E_INTERNAL] = {500, "internal"},
};

void api_reply_json(http_req_t *req, int status, const http_headers_t *headers, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(body);
  if (!text) {
    static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"Out of memory.\"}}\n";
    http_reply(req, 500, "application/json", NULL, oom, sizeof oom - 1);
    return;
  }
  size_t len = strlen(text);
  /* A trailing newline keeps terminals tidy; JSON allows it. */
  char *withnl = realloc(text, len + 2);
  if (withnl) {
    text = withnl;
    text[len++] = '\n';
    text[len] = '\0';
  }
  http_reply_take(req, status, "application/json", headers, text, len);
}

static void reply_error_v(http_req_t *req, int status, const char *code, const http_headers_t *headers,
                          const char *param, const char *fmt, va_list ap) {
  char raw[512], msg[1024], p[256];
  vsnprintf(raw, sizeof raw, fmt, ap);
  /* Client bytes may be invalid UTF-8, or cut mid-character by a "%.64s". */
  utf8_sanitize(msg, sizeof msg, raw, strlen(raw));
  json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
  if (err && param) {
    utf8_sanitize(p, sizeof p, param, strlen(param));
    json_object_set_new(err, "param", json_string(p));
  }
  api_reply_json(req, status, headers, err ? json_pack("{s:o}", "error", err) : NULL);
}

void api_error(http_req_t *req, api_err_t e, const http_headers_t *headers, const char *param, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_error_v(req, errors[e].status, errors[e].code, headers, param, fmt, ap);
  va_end(ap);
}

void api_error_as(http_req_t *req, int status, const char *code, const char *param, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_error_v(req, status, code, NULL, param, fmt, ap);
  va_end(ap);
}

void api_reply_submit_error(http_req_t *req, int rc) {
  if (rc == OFF_EFULL) {
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Retry-After", "1");
    api_error(req, API_E_QUEUE_FULL, &h, NULL, "The job queue is full; retry after a short wait.");
    http_headers_fini(&h);
  } else if (rc == OFF_ESTOPPED) {
    api_error(req, API_E_SHUTTING_DOWN, NULL, NULL, "The server is shutting down and accepts no new jobs.");
  } else if (rc == OFF_ESTORE) {
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Retry-After", "1");
    api_error(req, API_E_STORE_UNAVAILABLE, &h, NULL,
              "The job store cannot keep the job now (its disk is full or failing, or its database is unreachable); nothing was accepted. Retry later.");
    http_headers_fini(&h);
  } else {
    api_error(req, API_E_INTERNAL, NULL, NULL, "The job could not be created: %s.", err_str(rc));
  }
}

void api_reply_http_error(http_req_t *req) {
  switch (req->error) {
  case HTTP_ERR_HEADER_TOO_BIG:
    api_error(req, API_E_HEADER_TOO_LARGE, NULL, NULL, "The request's header block is over the 16 KiB limit.");
    return;
  case HTTP_ERR_BODY_TOO_BIG:
    api_error(req, API_E_PAYLOAD_TOO_LARGE, NULL, NULL, "The request body is over the server's --max-body limit.");
    return;
  default:
    api_error(req, API_E_BAD_REQUEST, NULL, NULL, "The request is not valid HTTP/1.x (%s).",
              req->error_detail ? req->error_detail : "parse error");
  }
}
