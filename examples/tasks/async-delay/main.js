const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(input, context) {
  const order = [];
  await Promise.all(
    input.delays.map(async (delay, index) => {
      await sleep(delay);
      order.push(index);
    }),
  );
  console.info(`attempt ${context.attempt}: fired in order ${order.join(',')}`);
  return { order, total: input.delays.reduce((a, b) => a + b, 0) };
}
