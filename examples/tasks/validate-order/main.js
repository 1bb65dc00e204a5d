(function (input) {
  input.lines.forEach((line, index) => {
    if (line.quantity <= 0) {
      throw new DataError(`line ${index} (${line.sku}): quantity must be positive, got ${line.quantity}`);
    }
  });
  const computed = input.lines.reduce((sum, line) => sum + line.quantity * line.price, 0);
  if (Math.abs(computed - input.total) > 0.005) {
    throw new DataError(`total ${input.total} does not match the lines, which add up to ${computed}`);
  }
  return { valid: true, lines: input.lines.length };
})
