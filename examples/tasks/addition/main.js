(function (input) {
  return { sum: input.num1 + input.num2 };
})
