'use strict';
// Piscina task module for node-sharp: one upload resized to every width.
//
// sharp's threads: libvips runs each pipeline on `sharp.concurrency()`
// threads, and sharp schedules pipelines on libuv's thread pool. With
// concurrency = cores / POOL_SIZE and the operation cache off, the pool has
// the budget offload's image workers have (libvips threads = cores /
// process workers, cache off).
//
// Two pipelines (SHARP_PIPELINE, via the pool's workerData):
// - decode-once (default): decode with shrink-on-load and auto-rotation at
//   the largest width into raw pixels, then encode that and derive every
//   smaller width from it, all widths in parallel. The same plan as
//   offload's image task, and the faster of the two in sharp (~25% less CPU
//   for 2048,1024,640,320,160 from a 12 MP JPEG on this machine).
// - clone: sharp's documented idiom for several outputs, one input and
//   `img.clone()` per width in parallel. Each clone runs a full pipeline
//   from the compressed input, so the JPEG is decoded once per width (with
//   shrink-on-load for the smaller ones).
const os = require('node:os');
const sharp = require('sharp');
const { workerData } = require('piscina');

const poolSize = (workerData && workerData.poolSize) || os.availableParallelism();
const pipeline = (workerData && workerData.pipeline) || 'decode-once';
sharp.concurrency(Math.max(1, Math.floor(os.availableParallelism() / poolSize)));
sharp.cache(false);

function encode(img, format, quality) {
  switch (format) {
    case 'jpeg':
      return img.jpeg({ quality });
    case 'png':
      return img.png();
    case 'avif':
      return img.avif({ quality });
    default:
      return img.webp({ quality });
  }
}

async function output(img, format, quality) {
  const { info } = await encode(img, format, quality).toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, bytes: info.size };
}

async function decodeOnce(input, widths, format, quality) {
  const largest = Math.max(...widths);
  let decoded;
  try {
    decoded = await sharp(input, { failOn: 'error' })
      .rotate()
      .resize({ width: largest, fit: 'inside' })
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new Error(`invalid_image: ${err.message}`);
  }
  const { data, info } = decoded;
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return Promise.all(
    widths.map((w) => {
      const img = sharp(data, raw);
      return output(w === largest ? img : img.resize({ width: w, fit: 'inside' }), format, quality);
    }),
  );
}

async function cloned(input, widths, format, quality) {
  const img = sharp(input, { failOn: 'error' }).rotate();
  try {
    return await Promise.all(
      widths.map((w) => output(img.clone().resize({ width: w, fit: 'inside' }), format, quality)),
    );
  } catch (err) {
    throw new Error(`invalid_image: ${err.message}`);
  }
}

module.exports = async function resize({ input, widths, format, quality }) {
  // A transferred Buffer arrives as a Uint8Array over the same memory.
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  return pipeline === 'clone' ? cloned(buf, widths, format, quality) : decodeOnce(buf, widths, format, quality);
};
