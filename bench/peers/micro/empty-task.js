'use strict';
// The empty piscina task for piscina-empty.js.
module.exports = function empty() {};
