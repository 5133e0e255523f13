# gnuplot -e "csv='push_sum.csv'; out='push_sum.png'" benchmarks/plots/push_sum.gp
if (!exists("csv")) csv = 'push_sum.csv'
if (!exists("out")) out = 'push_sum.png'
set terminal pngcairo size 900,560 noenhanced
set output out
set datafile separator ','
set title 'Push-Sum: rounds until every node is within 1e-6 of the average (no loss)'
set xlabel 'N'
set ylabel 'rounds'
set logscale x
set key top left
sel(t) = sprintf("< awk -F, '$1==\"%s\" && $3==0 && $6>0 {print $2\",\"$6}' %s", t, csv)
goal = sprintf("< awk -F, '$1==\"uniform\" && $3==0 {print $2\",\"$5\",\"$4}' %s", csv)
plot sel('uniform') using 1:2 with linespoints lw 2 pt 7 title 'uniform targets', \
     sel('hyparview') using 1:2 with linespoints lw 2 pt 5 title 'HyParView active view', \
     goal using 1:2 with lines dt 2 lw 2 title '1.5 (log2 N + log2 1/eps)', \
     goal using 1:3 with lines dt 3 lw 2 title 'log2 N'
